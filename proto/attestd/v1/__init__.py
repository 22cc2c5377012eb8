"""Generated gRPC code for attestd.v1; regenerate with proto/generate.sh."""
