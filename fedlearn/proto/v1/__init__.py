"""Generated protobuf and gRPC code (see protos/)."""
