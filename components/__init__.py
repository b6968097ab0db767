"""rocm-inference: vLLM and Infinity on AMD ROCm GPU servers, as Pulumi components."""
