"""Plain-PyTorch implementations of every op: the test oracle and the fallback backend."""
