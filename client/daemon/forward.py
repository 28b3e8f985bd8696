"""The CLI's client mode: while a daemon serves the home, a command is a call to it.

:func:`forward` sends the parsed command line as the JSON-RPC call of the same name (``group
ACTION`` is ``group_ACTION``, a dash is an underscore: ``send-file`` is ``send_file``; the
parameters are the command's arguments, by their names, a file's path made absolute) and
prints the result through the direct CLI's own output functions, so the output, the exit code
and the one-line errors are the same as without a daemon. ``recv`` and ``chat`` subscribe and
acknowledge what they print (and print the rings, live events, as they come). ``call`` has the
daemon join or start the call and stream (``call_start``, ``call_join``), waits for the outcome
(``call_stats`` with ``wait``) and prints what the direct command prints; messages arriving
meanwhile stay queued. The commands between the transports are calls too (``profile set`` is
``profile_set``, ``cross on`` is ``cross_on``, ``link-account`` is ``link_account``: the daemon
signs with its home's social login). ``register``, ``login``, ``logout`` and ``link`` do not run
through a daemon (:data:`NOT_FORWARDED`). A transport the daemon does not serve for the home is
not forwarded: the command runs directly (its state file is not the daemon's).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from e2e_proto.call_media import AUDIO_PROFILE, VIDEO_PROFILE
from e2e_proto.capabilities import PRIVATE, SOCIAL

from ..cli import between as between_cli
from ..cli import private as private_cli
from ..cli import social as social_cli
from ..cli.calls import describe, format_report
from ..cli.common import (
    PROG,
    only_leaf,
    print_chat_banner,
    print_fetched,
    print_whoami,
    user_error_line,
)
from ..core.calls import CallReport
from ..core.connection import ConnectionLost
from ..core.errors import ClientError
from ..social.own_devices import OwnDevice
from . import between_methods as between
from .client import DaemonClient, open_daemon
from .events import received_from_params, social_event_from_params
from .home import socket_path
from .hub import CAUGHT_UP
from .jsonrpc import Codes, RpcError
from .methods import TABLE
from .social_methods import stored_from_json
from .table import PATH

NOT_FORWARDED = ("register", "login", "logout", "link")
"""Commands that do not run through a daemon: those that make or end a home's login
(``register``, ``login`` and ``link`` make the account or device the daemon serves, ``logout``
revokes the login its connection holds). The daemon opens a home's accounts when it starts
and holds their logins while it runs, so these run before it starts or after it stops."""
LEAVE_WAIT = 5.0
"""Seconds an interrupted ``call`` waits for the daemon to leave the call."""

Render = Callable[[argparse.Namespace, Any], None]


def _nothing(args: argparse.Namespace, result: Any) -> None:
    """Commands that print nothing on success."""


def _whoami(args: argparse.Namespace, result: Any) -> None:
    print_whoami(result["account"], result["device"])


def _private_verify(args: argparse.Namespace, result: Any) -> None:
    private_cli.print_verify(args.name, private_cli.VerifyReport(
        result["key_changed"], result["safety_number"], result["released"]))


def _private_devices(args: argparse.Namespace, result: Any) -> None:
    private_cli.print_devices([[d["id"], d["name"], d["linked_at"], d["last_seen"]]
                               for d in result["devices"]], result["this_device"])


def _social_verify(args: argparse.Namespace, result: Any) -> None:
    if "safety_number" in result:  # NAME@private: as the private transport's verify
        _private_verify(args, result)
        return
    accepted = result["accepted"]
    social_cli.print_verify(
        args.name, [(d["id"], bytes.fromhex(d["key"]), d["status"]) for d in result["devices"]],
        None if accepted is None else (accepted["devices"], accepted["released"]))


def _social_devices(args: argparse.Namespace, result: Any) -> None:
    social_cli.print_devices([OwnDevice(d["id"], None if d["key"] is None
                                        else bytes.fromhex(d["key"]), d["created"],
                                        d["last_seen"], d["expires"], d["current"])
                              for d in result["devices"]])


def _fetched(args: argparse.Namespace, result: Any) -> None:
    print_fetched(result["path"], result["error"])


def _private_file_sent(args: argparse.Namespace, result: Any) -> None:
    private_cli.print_file_sent(result["name"], result["size"], args.name)


def _private_group_file_sent(args: argparse.Namespace, result: Any) -> None:
    private_cli.print_file_sent(result["name"], result["size"],
                                private_cli.group_target(args.name))


def _social_file_sent(args: argparse.Namespace, result: Any) -> None:
    social_cli.print_file_sent(args.name, int(result["id"]), result["name"], result["size"],
                               result["end_to_end"])


def _profile(args: argparse.Namespace, result: Any) -> None:
    between_cli.print_profile(between.profile_from_json(result), result["end_to_end"])


def _cross(args: argparse.Namespace, result: Any) -> None:
    if "joins" in result:  # social cross status
        between_cli.print_cross_report(result["account"], result["enabled"], result["devices"],
                                       [(j["device_id"], bytes.fromhex(j["key"]))
                                        for j in result["joins"]])
    else:
        between_cli.print_cross_status(args.transport, between.cross_status_from_json(result),
                                       result["enabled"], result["account"])


_BETWEEN: dict[str, Render] = {
    "profile_set": _profile,
    "profile_show": _profile,
    "status_list": lambda args, result: between_cli.print_statuses(
        between.statuses_from_json(result["statuses"])),
    "link_account": lambda args, result: between_cli.print_linked_account(
        result["account"], result["social_account"], between.sharing_from_json(
            result["sharing"])),
    "unlink_account": lambda args, result: between_cli.print_unlinked_account(
        result["social_account"]),
    "sharing": lambda args, result: between_cli.print_sharing(between.sharing_from_json(result)),
    "linked": lambda args, result: between_cli.print_linked(between.linked_from_json(result)),
    "cross_on": _cross,
    "cross_off": _cross,
    "cross_status": _cross,
    "cross_approve": lambda args, result: between_cli.print_cross_devices(
        result["device_id"], result["devices"], True),
    "cross_remove": lambda args, result: between_cli.print_cross_devices(
        result["device_id"], result["devices"], False),
}
"""How the results of the commands between the transports print, on either transport."""

RENDER: dict[tuple[str, str], Render] = {
    **{(transport, method): render for method, render in _BETWEEN.items()
       for transport in (PRIVATE, SOCIAL)},
    (PRIVATE, "whoami"): _whoami,
    (PRIVATE, "send"): _nothing,
    (PRIVATE, "react"): _nothing,
    (PRIVATE, "unreact"): _nothing,
    (PRIVATE, "verify"): _private_verify,
    (PRIVATE, "devices"): _private_devices,
    (PRIVATE, "approve"): lambda args, result: private_cli.print_approved(result["device_id"]),
    (PRIVATE, "unlink"): lambda args, result: private_cli.print_unlinked(result["device_id"]),
    (PRIVATE, "send_file"): _private_file_sent,
    (PRIVATE, "fetch_file"): _fetched,
    (PRIVATE, "group_create"): lambda args, result: private_cli.print_group_created(
        args.name, len(result["members"])),
    (PRIVATE, "group_add"): lambda args, result: private_cli.print_group_size(
        args.name, len(result["members"])),
    (PRIVATE, "group_remove"): lambda args, result: private_cli.print_group_removed(
        args.name, args.member),
    (PRIVATE, "group_leave"): lambda args, result: private_cli.print_group_left(args.name),
    (PRIVATE, "group_rename"): lambda args, result: private_cli.print_group_renamed(
        args.name, args.new_name),
    (PRIVATE, "group_admin"): lambda args, result: private_cli.print_group_admin(
        args.name, args.member, not args.revoke),
    (PRIVATE, "group_members"): lambda args, result: private_cli.print_group_members(
        result["members"], result["admins"]),
    (PRIVATE, "group_send"): _nothing,
    (PRIVATE, "group_send_file"): _private_group_file_sent,
    (SOCIAL, "whoami"): _whoami,
    (SOCIAL, "send"): lambda args, result: print(result["id"]),
    (SOCIAL, "group_send"): lambda args, result: print(result["id"]),
    (SOCIAL, "send_file"): _social_file_sent,
    (SOCIAL, "fetch_file"): _fetched,
    (SOCIAL, "group_create"): lambda args, result: social_cli.print_group_created(
        args.name, len(result["members"])),
    (SOCIAL, "group_add"): lambda args, result: social_cli.print_group_size(
        args.name, len(result["members"])),
    (SOCIAL, "group_remove"): lambda args, result: social_cli.print_group_removed(
        args.name, args.member),
    (SOCIAL, "group_leave"): lambda args, result: social_cli.print_group_left(args.name),
    (SOCIAL, "group_rename"): lambda args, result: social_cli.print_group_renamed(
        args.name, args.new_name),
    (SOCIAL, "group_members"): lambda args, result: social_cli.print_group_members(
        result["members"]),
    (SOCIAL, "group_send_file"): _social_file_sent,
    (SOCIAL, "react"): _nothing,
    (SOCIAL, "unreact"): lambda args, result: social_cli.check_unreacted(args.message_id,
                                                                         result["changed"]),
    (SOCIAL, "pin"): _nothing,
    (SOCIAL, "unpin"): lambda args, result: social_cli.check_unpinned(args.message_id,
                                                                      result["changed"]),
    (SOCIAL, "pins"): lambda args, result: social_cli.print_messages(
        stored_from_json(result["messages"])),
    (SOCIAL, "history"): lambda args, result: social_cli.print_history(
        args.name, stored_from_json(result["messages"]), result["more"]),
    (SOCIAL, "search"): lambda args, result: social_cli.print_messages(
        stored_from_json(result["messages"]), with_conversation=True),
    (SOCIAL, "secret"): lambda args, result: social_cli.print_secret(args.name,
                                                                     result["changed"]),
    (SOCIAL, "verify"): _social_verify,
    (SOCIAL, "devices"): _social_devices,
    (SOCIAL, "unlink"): lambda args, result: social_cli.print_revoked(result["device_id"], None),
}
"""How each forwarded call's result is printed: the direct CLI's output functions."""


class NotServed(Exception):
    """The daemon has no account on the command's transport: run the command directly."""


def method_of(args: argparse.Namespace) -> str:
    """The method a command line calls: the command, or ``COMMAND_ACTION`` for a command with
    actions (``group``, ``profile``, ``status``, ``cross``); a dash is an underscore."""
    action = getattr(args, f"{args.command}_command", None)
    command = str(args.command) if action is None else f"{args.command}_{action}"
    return command.replace("-", "_")


def params_of(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """The call's parameters: the command's arguments named in the method's schema (a path
    made absolute: the daemon's working directory is not this command's)."""
    params: dict[str, Any] = {"transport": args.transport}
    entry = TABLE.get(method)
    for param in () if entry is None else entry.params:
        value = getattr(args, param.name, None)
        if value is not None:
            params[param.name] = os.path.abspath(value) if param.kind is PATH else value
    return params


def forward(args: argparse.Namespace) -> int | None:
    """Run the command through the daemon serving ``args.home``; the exit code, or None when
    the daemon does not serve the command's transport (run it directly)."""
    try:
        if args.command in NOT_FORWARDED:
            raise ClientError(f"a daemon serves {args.home}: '{args.command}' does not run "
                              "through it; stop the daemon first")
        try:
            return trio.run(_forward, args, socket_path(Path(args.home)))
        except BaseExceptionGroup as group:  # from chat's nursery: the one error inside
            raise only_leaf(group) from None
    except NotServed:
        return None
    except KeyboardInterrupt:
        return 130
    except (ClientError, ConnectionLost) as exc:
        print(f"{PROG}: {user_error_line(exc, 'daemon')}", file=sys.stderr)
        return 1
    except RpcError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1


async def _forward(args: argparse.Namespace, socket: Path) -> int:
    async with open_daemon(socket, args.timeout) as daemon:
        if args.command == "recv":
            await _receive(daemon, args, args.wait)
        elif args.command == "chat":
            await _chat(daemon, args)
        elif args.command == "call":
            await _call_through(daemon, args)
        else:
            method = method_of(args)
            result = await _call(daemon, method, params_of(args, method))
            RENDER.get((args.transport, method), _nothing)(args, result)
            if isinstance(result, dict):  # a private command's warnings, after its output
                between_cli.print_notices(result.get("notices", ()))
    return 0


async def _call(daemon: DaemonClient, method: str, params: dict[str, Any]) -> Any:
    try:
        return await daemon.call(method, **params)
    except RpcError as exc:
        if exc.code == Codes.NO_TRANSPORT:
            raise NotServed from None
        raise


async def _shower(daemon: DaemonClient, transport: str,
                  as_json: bool) -> Callable[[str, dict[str, Any]], None]:
    """How ``recv`` prints an event of ``transport``: the direct CLI's printer."""
    me = (await _call(daemon, "whoami", {"transport": transport}))["account"]
    if transport == SOCIAL:
        show_social = social_cli.printer(as_json, me)

        def show(name: str, params: dict[str, Any]) -> None:
            show_social(social_event_from_params(params))
    else:
        show_private = private_cli.printer(as_json)

        def show(name: str, params: dict[str, Any]) -> None:
            show_private(received_from_params(name, params))
    return show


async def _receive(daemon: DaemonClient, args: argparse.Namespace, wait: float | None) -> None:
    """``recv``: print (as the direct CLI does) and acknowledge the events of the transport;
    without ``--wait``, until every queued one was printed."""
    transport = args.transport
    show = await _shower(daemon, transport, getattr(args, "json", False))
    await daemon.call("subscribe")
    with trio.move_on_after(math.inf if wait is None else wait):
        async for note in daemon.notifications:
            name, params = note["method"], note.get("params", {})
            if name == CAUGHT_UP:
                if wait is None:
                    return
                continue
            event_id = params.get("event_id")
            if params.get("transport") != transport:
                continue
            if name == "call_ring":  # live, as the direct recv shows a call ringing
                show(name, params)
                continue
            # This device's own sends (no event id) and key changes are not what recv prints.
            if event_id is None or name == "key_changed":
                continue
            show(name, params)
            await daemon.call("ack", ids=[event_id])
        raise ConnectionLost("the daemon closed the connection")


async def _chat(daemon: DaemonClient, args: argparse.Namespace) -> None:
    """``chat``: what arrives is printed while each line of stdin is sent to NAME (with
    ``--group``: to the group; on the social transport a group is a NAME)."""
    name = args.name or args.group
    private_group = args.group is not None and args.transport == PRIVATE
    method = "group_send" if private_group else "send"
    print_chat_banner(name)
    if private_group:  # the group must be known here, as the direct chat checks first
        await _call(daemon, "group_members", {"name": name, "transport": args.transport})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_receive, daemon, args, math.inf)
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            if not line or line.strip() == "/quit":
                nursery.cancel_scope.cancel()
                return
            if line.strip():
                await _call(daemon, method, {"name": name, "text": line.rstrip("\n"),
                                             "transport": args.transport})


async def _call_through(daemon: DaemonClient, args: argparse.Namespace) -> None:
    """``call``: the daemon joins or starts the call and streams; printed here as the direct
    command prints it: the call's line at the start, the figures at the end. Interrupted, the
    daemon leaves the call."""
    params: dict[str, Any] = {"seconds": args.seconds, "video": args.video,
                              "transport": args.transport}
    if args.answer:
        method = "call_join"
    else:
        method = "call_start"
        params.update({"name": args.name} if args.name is not None else {"group": args.group})
    placed = await _call(daemon, method, params)
    call = {"call_id": placed["call_id"], "transport": args.transport}
    if not args.json:
        print(describe(bytes.fromhex(placed["call_id"]), placed["end_to_end"],
                       len(placed["participants"]), args.transport,
                       VIDEO_PROFILE if args.video else AUDIO_PROFILE, args.seconds),
              flush=True)
    try:
        outcome = await daemon.call("call_stats", wait=True, **call)
    except BaseException:
        with trio.CancelScope(shield=True), trio.move_on_after(LEAVE_WAIT):
            try:
                await daemon.call("call_leave", **call)
            except (RpcError, ConnectionLost):
                pass  # over already, or the daemon is gone
        raise
    if outcome["error"] is not None:
        raise ClientError(outcome["error"])
    report = outcome["report"]
    print(json.dumps(report) if args.json else format_report(CallReport.from_json(report)),
          flush=True)
