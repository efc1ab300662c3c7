"""The PeerService RPCs: name, B's role method, message types, and which side streams.

One table that the gRPC servicer (party_b) and the gRPC client (party_a) both read, so the two cannot
disagree about how a message travels.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedlearn.protocol import messages as m


@dataclass(frozen=True)
class Rpc:
    name: str  # the gRPC method name in peer.proto
    method: str  # the NodeB method and the PeerApi method
    request: type
    response: type
    request_streamed: bool = False
    response_streamed: bool = False
    retry: bool = False  # safe to send twice (no state change on B, or an idempotent one)


RPCS: dict[str, Rpc] = {
    rpc.method: rpc
    for rpc in (
        Rpc("OpenSession", "open_session", m.OpenSessionRequest, m.OpenSessionResponse, retry=True),
        Rpc("PsiBlind", "psi_blind", m.PsiBlindRequest, m.PsiBlindResponse, True, True),
        Rpc("PsiPeerSet", "psi_peer_set", m.PsiPeerSetRequest, m.PsiPeerSetResponse, False, True),
        Rpc("PsiResult", "psi_result", m.PsiResultRequest, m.PsiResultResponse, True, True),
        Rpc(
            "BatchForward",
            "batch_forward",
            m.BatchForwardRequest,
            m.BatchForwardResponse,
            True,
            True,
        ),
        Rpc(
            "BatchGradient",
            "batch_gradient",
            m.BatchGradientRequest,
            m.BatchGradientResponse,
            True,
            True,
        ),
        Rpc("BatchUpdate", "batch_update", m.BatchUpdateRequest, m.BatchUpdateResponse),
        Rpc("EpochLoss", "epoch_loss", m.EpochLossRequest, m.EpochLossResponse),
        Rpc(
            "PartialScores",
            "partial_scores",
            m.PartialScoresRequest,
            m.PartialScoresResponse,
            False,
            True,
        ),
        Rpc("CommitModel", "commit_model", m.CommitModelRequest, m.CommitModelResponse),
        Rpc("DeleteModel", "delete_model", m.DeleteModelRequest, m.DeleteModelResponse, retry=True),
        Rpc("CheckModels", "check_models", m.CheckModelsRequest, m.CheckModelsResponse, retry=True),
        Rpc(
            "CloseSession",
            "close_session",
            m.CloseSessionRequest,
            m.CloseSessionResponse,
            retry=True,
        ),
    )
}
