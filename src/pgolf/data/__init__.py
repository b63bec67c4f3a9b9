"""pgolf.data: tokenizers, official `.bin` shards, dataset build/download, and training token streams.

Modules: `shards` (format, validation, val tokens), `tokenizer` (SentencePiece, byte tables for bpb),
`build` (text → dataset, embedded sample), `hub` (official manifest download), `loader` (per-rank streams).
"""
