"""Classical codecs as honest anchors: JPEG and WebP per frame, H.264, HEVC and AV1, at matched PSNR.

:mod:`semcom.anchors.codecs` encodes a clip to real bytes and decodes it back
(:class:`Codec`, :data:`CODECS`); :mod:`semcom.anchors.matched` finds the cheapest
setting whose clip PSNR lands within +-tol of a target (:func:`match_psnr`);
:mod:`semcom.anchors.survey` tabulates that over the content regimes (:func:`anchor_table`).
"""

from semcom.anchors.codecs import (
    ALL_CODECS,
    CODECS,
    Codec,
    CodecError,
    EncodedClip,
    PillowCodec,
    PyAVCodec,
    X265Codec,
    get_codec,
    strip_h264_user_data_sei,
)
from semcom.anchors.matched import MatchResult, Point, match_psnr

__all__ = ["ALL_CODECS", "CODECS", "Codec", "CodecError", "EncodedClip", "MatchResult", "PillowCodec", "Point",
           "PyAVCodec", "X265Codec", "anchor_table", "get_codec", "match_psnr", "strip_h264_user_data_sei"]


def __getattr__(name: str):
    # imported lazily so that `python -m semcom.anchors.survey` does not import the module twice
    if name == "anchor_table":
        from semcom.anchors.survey import anchor_table

        return anchor_table
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
