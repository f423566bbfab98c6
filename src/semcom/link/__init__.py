"""The endpoints and their bit-exact wire format."""

from semcom.link.endpoints import FrameRecord, Receiver, Transmitter
from semcom.link.wire import HEADER_SIZE, StreamHeader, decode_message, encode_hit, encode_miss, read_message

__all__ = ["HEADER_SIZE", "FrameRecord", "Receiver", "StreamHeader", "Transmitter", "decode_message",
           "encode_hit", "encode_miss", "read_message"]
