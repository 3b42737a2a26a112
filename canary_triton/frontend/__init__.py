"""The audio front end: decoding and resampling audio, log-mel features, the preprocessor's
checks and prompt building."""
