"""The content walker: one input -> every part any reader could deliver, within limits.

Lives here: ``walker`` (the union of readings, docs/WALKER.md; one frozen
``parts.Context`` passed down), ``headers`` (every reading of a header block),
``params`` (parameters, names, boundaries, RFC 2047/2231), ``mime``
(boundaries, and the table of transfer encodings), ``transfer`` (base64 and
quoted-printable, strict and lenient), ``textblocks`` (the table of files
encoded in text: uuencode, yEnc, BinHex, data: URIs), ``embedded`` (where a
message begins: at offset 0, or inside a text), ``archives`` (the table
of container formats, zip and tar), ``streams`` (gzip, bzip2, xz), ``zipscan``
and ``formats`` (zip local headers, ISO 9660, TNEF, BinHex), ``parts`` (what a
walk yields, its context and its budget).

Runs in workers: may import the stdlib, :mod:`scand.config` and
:mod:`scand.events` only.
"""

from scand.content.parts import Encrypted, Part
from scand.content.walker import walk

__all__ = ["Encrypted", "Part", "walk"]
