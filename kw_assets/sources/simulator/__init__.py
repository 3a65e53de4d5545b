"""The offline default: a deterministic simulated exchange and weather feed, served to the real
Kalshi and Visual Crossing clients as httpx transports. Everything it produces is labelled simulated."""
