"""Face engine: decoding, detection, alignment, embedding and quality."""
