"""Long-form and streamed transcripts: voice activity, segmenting at pauses, joining the
segments' texts, partial texts that concatenate to the final one."""
