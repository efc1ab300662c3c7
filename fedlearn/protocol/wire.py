"""The one place where typed messages meet protobuf: ``to_proto`` / ``from_proto`` pairs.

Every PeerService message in ``fedlearn.protocol.messages`` has the protobuf message of the same name
in ``fedlearn.proto.v1.peer_pb2``, with the same field names. The converters walk dataclass fields and
recurse into nested messages; enums travel as their integer values and are checked on the way in.
Anything the peer sends is parsed by protobuf (never unpickled) and then checked by the role code.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, TypeVar

from google.protobuf.message import DecodeError, Message

from fedlearn.errors import InvalidPeerData
from fedlearn.proto.v1 import peer_pb2
from fedlearn.protocol import messages

T = TypeVar("T")


def proto_class(message_type: type) -> type[Message]:
    """The protobuf class for a message dataclass (same name in peer_pb2)."""
    cls = getattr(peer_pb2, message_type.__name__, None)
    if cls is None:
        raise TypeError(f"no protobuf message named {message_type.__name__} in peer.proto")
    return cls


def to_proto(message: Any) -> Message:
    """Dataclass -> protobuf message."""
    proto = proto_class(type(message))()
    for spec in dataclasses.fields(message):
        value = getattr(message, spec.name)
        if dataclasses.is_dataclass(value):
            getattr(proto, spec.name).CopyFrom(to_proto(value))
        elif isinstance(value, enum.Enum):
            setattr(proto, spec.name, int(value.value))
        elif isinstance(value, tuple):  # a repeated scalar field
            getattr(proto, spec.name).extend(value)
        else:
            setattr(proto, spec.name, value)
    return proto


def from_proto(proto: Message, message_type: type[T]) -> T:
    """Protobuf message -> dataclass of ``message_type``; unknown enum values are refused."""
    values: dict[str, Any] = {}
    hints = {spec.name: spec for spec in dataclasses.fields(message_type)}  # type: ignore[arg-type]
    for name, spec in hints.items():
        raw = getattr(proto, name)
        field_type = _field_type(message_type, spec)
        if dataclasses.is_dataclass(field_type):
            values[name] = from_proto(raw, field_type)  # type: ignore[arg-type]
        elif isinstance(field_type, type) and issubclass(field_type, enum.Enum):
            try:
                values[name] = field_type(raw)
            except ValueError:
                raise InvalidPeerData(
                    f"{message_type.__name__}.{name}: unknown value {raw}"
                ) from None
        elif proto.DESCRIPTOR.fields_by_name[name].is_repeated:  # a repeated scalar field
            values[name] = tuple(raw)
        else:
            values[name] = raw
    return message_type(**values)


def encode(message: Any) -> bytes:
    """Dataclass -> serialized protobuf bytes (used by the in-memory transport and tests)."""
    return to_proto(message).SerializeToString()


def decode(data: bytes, message_type: type[T]) -> T:
    """Serialized protobuf bytes -> dataclass; malformed bytes raise InvalidPeerData."""
    proto = proto_class(message_type)()
    try:
        proto.ParseFromString(data)
    except DecodeError as exc:
        raise InvalidPeerData(f"malformed {message_type.__name__}: {exc}") from None
    return from_proto(proto, message_type)


_TYPES: dict[str, type] = {
    name: value for name, value in vars(messages).items() if isinstance(value, type)
}


def _field_type(owner: type, spec: dataclasses.Field[Any]) -> Any:
    """Resolve a dataclass field's annotation (a string under ``from __future__ import annotations``)."""
    annotation = spec.type
    if isinstance(annotation, str):
        return _TYPES.get(annotation, annotation)
    return annotation
