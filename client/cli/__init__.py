"""``e2e-chat``, the command line of both transports: the entry point and its parser
(``main``), the private and the social transport's commands, what they share (``common``), and
the README's demo (``python -m client.cli.demo``)."""
