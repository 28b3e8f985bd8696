"""The business inbox (``e2e-business``): one web page for a business's conversations on both
transports, served by an endpoint that holds the keys (DESIGN §16).

The inbox process is a linked device of the business's private account and a logged-in device
of its social account; it decrypts what arrives, keeps it in its own sealed store
(:mod:`.store`) and serves it to the business's agents (:mod:`.web`), who reply through the
transport each conversation came on (:mod:`.lines`).
"""
