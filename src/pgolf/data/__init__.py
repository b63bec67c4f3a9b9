"""pgolf.data: tokenizers, official `.bin` shards, datasets and training token streams.

Modules: `shards` (format, validation, val tokens), `tokenizer` (SentencePiece, byte tables for bpb),
`families` (SentencePiece, CaseOps, byte260, tiktoken behind one interface), `caseops` (the case
transform), `audit` (byte-accounting audit), `corpus` (reading text), `writer` (shards, sidecars),
`build` (text → dataset, embedded sample), `retokenize`, `manifest` (document records, load checks),
`sidecar` (eval byte counts), `hub` (official manifest download), `loader` and `coprime` (per-rank
training streams).
"""
