"""The social transport's client: a device's login on the social server, conversations and
groups, secret (end-to-end encrypted) conversations, reactions and pins, history and search,
receiving, and the state kept in ``HOME/social.db``."""
