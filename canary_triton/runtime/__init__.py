"""Running an export on the CPU: precision and thread choices, the ONNX Runtime sessions, and
loading an export's artifacts into the served pipeline."""
