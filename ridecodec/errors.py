"""The codec's own exceptions.

Every failure a user can cause (a bad input file, a corrupt .rdc, a model that is not installed)
is a ``RidecodecError`` subclass. Each carries the exit code the CLI returns for it, so scripts can
tell "your file is broken" from "install a model" without parsing messages.
"""


class RidecodecError(Exception):
    """Base class: the message is one line the user can act on."""

    exit_code = 1


class InputError(RidecodecError):
    """An input file is missing, unreadable or not an image."""

    exit_code = 3


class UnsupportedImageError(RidecodecError):
    """The image's mode or bit depth is one the codec does not code."""

    exit_code = 4


class FormatError(RidecodecError):
    """A .rdc file is malformed: bad magic, truncated, bad lengths, bad header checksum."""

    exit_code = 5


class VersionError(FormatError):
    """A .rdc file was written by a newer format version than this codec reads."""

    exit_code = 5


class ModelNotFoundError(RidecodecError):
    """No installed plug-in registers the requested model name."""

    exit_code = 6


class WeightsMismatchError(RidecodecError):
    """The installed model's weights differ from those the file was encoded with."""

    exit_code = 6


class DamagedInstallationError(RidecodecError):
    """Data shipped with ridecodec (the exact models' lookup tables) fails its checksum."""

    exit_code = 6


class IntegrityError(RidecodecError):
    """Decoded pixels fail the CRC stored in the file."""

    exit_code = 7


class OutputExistsError(RidecodecError):
    """The output file exists and overwriting was not asked for."""

    exit_code = 8


class PluginError(RidecodecError):
    """A density-model plug-in raised or returned unusable probability tables."""

    exit_code = 9


class DeviceUnavailableError(RidecodecError):
    """The requested device (a CUDA GPU) is not available to torch."""

    exit_code = 10


class OutputError(RidecodecError):
    """An output cannot be written: its folder is missing or read-only, the disk is full, or it
    would replace an input or another output of the same run."""

    exit_code = 11
