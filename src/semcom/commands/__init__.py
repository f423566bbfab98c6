"""The ``semcom`` sub-commands: one module each, with ``add_parser(sub)`` and ``main(args)``."""

#: Sub-command modules in the order ``semcom --help`` lists them.
COMMANDS = ("run", "encode", "decode", "train", "bench", "ber", "reproduce", "serve", "send")
