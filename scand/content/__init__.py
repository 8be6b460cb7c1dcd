"""The content walker: one input -> every part any reader could deliver, within limits.

Lives here: ``walker`` (the union of readings, docs/WALKER.md), ``headers``
(lenient headers, parameters, names), ``mime`` (boundaries, transfer
encodings), ``decoders`` (base64/QP variants, uuencode, yEnc, BinHex, data:
URIs), ``archives``, ``zipscan`` and ``formats`` (zip both ways, tar, gzip,
bzip2, xz, ISO 9660, TNEF), ``parts`` (what a walk yields, and its budget).

Runs in workers: may import the stdlib, :mod:`scand.config` and
:mod:`scand.events` only.
"""

from scand.content.parts import Encrypted, Part
from scand.content.walker import walk

__all__ = ["Encrypted", "Part", "walk"]
