"""pgolf.data: tokenizers, official `.bin` shards, datasets and training token streams.

Modules: `shards` (format, validation, val tokens), `tokenizer` (SentencePiece, byte tables for bpb),
`families` (the tokenizer interface and SentencePiece; `byte260`, `tiktoken_bpe` and `caseops`, the
CaseOps transform and tokenizer, are the other families), `audit` (byte-accounting audit), `corpus`
(reading text), `writer` (shards, sidecars), `build` (text → dataset, embedded sample), `retokenize`,
`manifest` (document records, load checks), `sidecar` (val byte sidecars), `resolve` (a config's
dataset, eval byte counts), `hub` (official manifest download), `loader` and `coprime` (per-rank
training streams).
"""
