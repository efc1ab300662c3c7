"""The in-memory transport: A's ``PeerApi`` over B's node object in the same process.

``InMemoryPeer`` calls B's node directly but still sends every message through its protobuf encoding,
so tests exercise the real wire form, and it can record every message that crosses (the privacy test
reads the record). B's node is any object with B's RPC methods, ``method(request, partner)``
(``party_b.node.NodeB``); this module does not import it, so A-side code never loads B's implementation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from fedlearn.protocol import messages as m
from fedlearn.protocol import wire

T = TypeVar("T")


class PeerNode(Protocol):
    """B's side as the in-memory transport sees it: a name, and one method per RPC (by name)."""

    name: str


@dataclass(frozen=True)
class RecordedMessage:
    """One message as it crossed: direction ("A->B" or "B->A"), its type and its decoded value."""

    direction: str
    rpc: str
    message: Any
    size: int


class InMemoryPeer:
    """B's role behind the PeerApi, in process; every message is encoded and decoded as on the wire."""

    def __init__(
        self, role: PeerNode, *, identity: str, record: list[RecordedMessage] | None = None
    ) -> None:
        self.role = role
        self.identity = identity
        self.peer_name = role.name
        self.record = record
        self.bytes_sent = 0
        self.bytes_received = 0

    def _call(self, rpc: str, request: Any, response_type: type[T]) -> T:
        sent = wire.encode(request)
        self.bytes_sent += len(sent)
        received = wire.decode(sent, type(request))
        if self.record is not None:
            self.record.append(RecordedMessage("A->B", rpc, received, len(sent)))
        response = getattr(self.role, rpc)(received, self.identity)
        data = wire.encode(response)
        self.bytes_received += len(data)
        decoded = wire.decode(data, response_type)
        if self.record is not None:
            self.record.append(RecordedMessage("B->A", rpc, decoded, len(data)))
        return decoded

    def open_session(self, request: m.OpenSessionRequest) -> m.OpenSessionResponse:
        return self._call("open_session", request, m.OpenSessionResponse)

    def psi_blind(self, request: m.PsiBlindRequest) -> m.PsiBlindResponse:
        return self._call("psi_blind", request, m.PsiBlindResponse)

    def psi_peer_set(self, request: m.PsiPeerSetRequest) -> m.PsiPeerSetResponse:
        return self._call("psi_peer_set", request, m.PsiPeerSetResponse)

    def psi_result(self, request: m.PsiResultRequest) -> m.PsiResultResponse:
        return self._call("psi_result", request, m.PsiResultResponse)

    def batch_forward(self, request: m.BatchForwardRequest) -> m.BatchForwardResponse:
        return self._call("batch_forward", request, m.BatchForwardResponse)

    def batch_gradient(self, request: m.BatchGradientRequest) -> m.BatchGradientResponse:
        return self._call("batch_gradient", request, m.BatchGradientResponse)

    def batch_update(self, request: m.BatchUpdateRequest) -> m.BatchUpdateResponse:
        return self._call("batch_update", request, m.BatchUpdateResponse)

    def epoch_loss(self, request: m.EpochLossRequest) -> m.EpochLossResponse:
        return self._call("epoch_loss", request, m.EpochLossResponse)

    def partial_scores(self, request: m.PartialScoresRequest) -> m.PartialScoresResponse:
        return self._call("partial_scores", request, m.PartialScoresResponse)

    def commit_model(self, request: m.CommitModelRequest) -> m.CommitModelResponse:
        return self._call("commit_model", request, m.CommitModelResponse)

    def delete_model(self, request: m.DeleteModelRequest) -> m.DeleteModelResponse:
        return self._call("delete_model", request, m.DeleteModelResponse)

    def check_models(self, request: m.CheckModelsRequest) -> m.CheckModelsResponse:
        return self._call("check_models", request, m.CheckModelsResponse)

    def close_session(self, request: m.CloseSessionRequest) -> m.CloseSessionResponse:
        return self._call("close_session", request, m.CloseSessionResponse)
