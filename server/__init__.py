"""The two servers (``relay/``, ``social/``) and what they share (``common/``)."""
