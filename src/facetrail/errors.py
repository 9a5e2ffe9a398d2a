"""Errors that facetrail reports to its users.

Every error a user can cause (bad image, bad argument, refused record) is a
``FacetrailError`` with a message that names the problem; the CLI prints it and
exits non-zero, a batch records it against the item and carries on.
"""

from __future__ import annotations


class FacetrailError(Exception):
    """Base class for errors that are reported to the user as they are."""


class ConfigError(FacetrailError):
    """The configuration file or an option is invalid."""


class WorkersLostError(FacetrailError):
    """Every worker of a run on a Ray cluster was lost before the work was done; ``summary`` is what an enrolment
    run did until then (when it was one)."""

    def __init__(self, message: str, summary: object = None) -> None:
        super().__init__(message)
        self.summary = summary


class ModelFormatError(FacetrailError):
    """A model's weight file is not laid out as expected (wrong file, damaged, or another version)."""


# --- images -----------------------------------------------------------------


class ImageError(FacetrailError):
    """An image could not be used."""


class EmptyImageError(ImageError):
    """The file has no bytes."""


class ImageTooLargeError(ImageError):
    """The file or its decoded pixel count exceeds the configured limits."""


class UnsupportedImageError(ImageError):
    """The bytes are not an image in an accepted format."""


class MultiFrameImageError(UnsupportedImageError):
    """The image has several frames (animation, pages); a single still image is required."""


class CorruptImageError(ImageError):
    """The image is truncated or its data is damaged."""


# --- faces ------------------------------------------------------------------


class FaceError(FacetrailError):
    """No usable face could be taken from an image."""


class NoFaceError(FaceError):
    """No face was found."""


class MultipleFacesError(FaceError):
    """More than one face was found where exactly one is required."""


class SeveralFacesError(MultipleFacesError):
    """A probe shows several faces and none was chosen; ``boxes`` lists them as [x, y, w, h], largest first."""

    def __init__(self, boxes: list[list[int]]) -> None:
        self.boxes = boxes
        listed = "; ".join(f"face {number}: {box}" for number, box in enumerate(boxes, start=1))
        super().__init__(f"{len(boxes)} faces found in the probe; choose one ({listed})")


class NoSuchFaceError(FaceError):
    """The face chosen by its number is not among those found."""


class PoorQualityError(FaceError):
    """The face was found but its quality is below the configured thresholds."""


# --- galleries --------------------------------------------------------------


class GalleryError(FacetrailError):
    """A gallery operation was refused."""


class NotFoundError(GalleryError):
    """A named gallery, subject or image does not exist."""


class DuplicateError(GalleryError):
    """The record already exists."""


class IndexFileError(GalleryError):
    """A saved vector index file is corrupt, truncated or not an index file."""


# --- protection of biometric data -------------------------------------------


class CryptoError(FacetrailError):
    """A data key is missing or wrong, or encrypted data does not decrypt (tampered or corrupt)."""


# --- accountability -----------------------------------------------------------


class AccountabilityError(FacetrailError):
    """An action was refused by the accountability layer."""


class AuthenticationError(AccountabilityError):
    """Who is acting could not be established: bad credentials, an expired or revoked token, a locked account."""


class PermissionDeniedError(AccountabilityError):
    """The user's roles or grants do not allow the action."""


class PolicyError(AccountabilityError):
    """A policy file does not parse or is inconsistent; ``problems`` lists (line, message) pairs."""

    def __init__(self, problems: list[tuple[int | None, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"line {line}: {message}" if line else message for line, message in problems))


class RefusedError(AccountabilityError):
    """A search or comparison was refused under the policy (the refusal itself is audited)."""


class AuditError(AccountabilityError):
    """The audit trail could not be written or its signing key is unusable."""


class WitnessUnavailable(AuditError):
    """The witness cannot be reached, read or written now; the heads it misses are pushed again later."""


class WitnessRefused(AuditError):
    """The witness refuses the head: it is malformed, or inconsistent with heads the witness already holds."""


class BusyError(FacetrailError):
    """The work cannot start now (e.g. every face engine for it is busy); try again shortly."""
