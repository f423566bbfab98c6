"""The ``semcom`` sub-commands: one module each, with ``add_parser(sub)`` and ``main(args)``."""

#: Each sub-command's line in ``semcom --help``, in the order it lists them (kept here, so that ``semcom --help``
#: imports none of the command modules).
HELP = {
    "run": "stream the eight regimes through every rule; write a run folder",
    "encode": "transmitter: SOURCE -> stream file",
    "decode": "receiver: stream file -> video file or folder of PNG frames",
    "train": ("train the autoencoder (default config reproduces the shipped weights), "
              "or run Algorithm 1 / the beta-VAE, or train the codebook paper's VQ-VAE or the robust paper's models"),
    "bench": "throughput and retrieval time, as ratios to a floor in the same run",
    "ber": "bit and block error rates against Eb/N0 or SNR (Monte Carlo on Sionna)",
    "reproduce": "regenerate a paper's table or figure (semcom reproduce --list)",
    "attack": "clean and attacked accuracy of a shipped robust model (semantic noise: fgsm, pgd, universal)",
    "serve": "live receiver: sessions of `semcom send` over TCP or UDP, frames to OUTDIR",
    "send": "live transmitter: SOURCE -> `semcom serve` over TCP or UDP, with feedback",
}

#: Sub-command modules in the order ``semcom --help`` lists them.
COMMANDS = tuple(HELP)
