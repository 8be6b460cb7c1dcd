"""The content walker: MIME, encodings and archives -> named parts, within limits."""

from scand.content.parts import Encrypted, Part
from scand.content.walker import walk

__all__ = ["Encrypted", "Part", "walk"]
