"""The `ridecodec` command: parse arguments, call the API, report. No codec logic lives here.

Errors the user can cause end in one line on stderr (``ridecodec: error: ...``) and the exit code
of their kind (see errors.py); with several inputs, the others are still done and a summary
follows.

One module per family of commands (coding, evaluating, training, drawing); what they share is in
common.py (options, exit codes, the progress bar) and batch.py (many files in, many files out).
"""

import click

from .coding import compress, decompress, info, models
from .drawing import explain_command, inpaint_command, sample_command
from .evaluating import eval_command
from .training import train


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ridecodec")
def main():
    """Lossless image compression with learned density models."""


for command in (
    compress,
    decompress,
    info,
    models,
    eval_command,
    train,
    explain_command,
    sample_command,
    inpaint_command,
):
    main.add_command(command)
