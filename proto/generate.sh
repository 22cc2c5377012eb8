#!/usr/bin/env bash
# Regenerates the Python code for proto/attestd/v1/*.proto into OUT (default:
# beside the .proto files). tests/proto/test_generated_code.py runs this into a
# temporary directory and fails when the committed code differs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here}"
python="${PYTHON:-python3}"
"$python" -m grpc_tools.protoc \
    --proto_path="$here" \
    --python_out="$out" \
    --pyi_out="$out" \
    --grpc_python_out="$out" \
    "$here"/attestd/v1/*.proto
