"""The private transport's client: a device's session on the relay (register, prekeys), linking
devices, verified device lists, sending with fan-out, receiving, and the state kept in
``HOME/state.db``."""
