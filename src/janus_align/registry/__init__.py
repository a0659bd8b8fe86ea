"""The MLflow model registry: the register stage (champion gate), the logged chat model
(pyfunc: messages in, text out) and `janus chat`."""
