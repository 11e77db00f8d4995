// Package batch encodes and decodes Kafka record batches, message format v2
// (magic 2), byte for byte as Kafka writes them. Herald stores batches
// verbatim on disk and serves the same bytes to Kafka clients, so every
// constant below is frozen by the Kafka protocol: changing one breaks every
// client and every segment already written.
//
// # Batch header (61 bytes, big-endian)
//
//	offset size field                 notes
//	     0    8 baseOffset            not covered by the CRC (patched on append)
//	     8    4 batchLength           bytes after this field: Size() = 12 + batchLength
//	    12    4 partitionLeaderEpoch  not covered by the CRC (patched on append)
//	    16    1 magic                 always 2
//	    17    4 crc                   CRC-32C (Castagnoli) of bytes [21:Size())
//	    21    2 attributes            bits 0-2 compression (0 none, 1 gzip,
//	                                  2 snappy, 3 lz4, 4 zstd), bit 3 timestamp
//	                                  type (1 = LogAppendTime), bit 4
//	                                  transactional, bit 5 control
//	    23    4 lastOffsetDelta       last offset - baseOffset; compaction keeps it
//	    27    8 baseTimestamp         ms; first record's timestamp
//	    35    8 maxTimestamp          ms; the append time under LogAppendTime
//	    43    8 producerId            -1 when not idempotent
//	    51    2 producerEpoch         -1 when not idempotent
//	    53    4 baseSequence          -1 when not idempotent
//	    57    4 recordCount           may be < lastOffsetDelta+1 after compaction
//	    61    - records               compressed as one stream when bits 0-2 != 0
//
// # Record (varints are zigzag, as in protobuf sint32/sint64)
//
//	length          varint   bytes after this field
//	attributes      int8     unused, 0
//	timestampDelta  varlong  timestamp - baseTimestamp
//	offsetDelta     varint   offset - baseOffset
//	keyLength       varint   -1 = null key
//	key             bytes
//	valueLength     varint   -1 = null value
//	value           bytes
//	headerCount     varint
//	headers         headerCount × (keyLength varint (never null), key,
//	                valueLength varint (-1 = null), value)
//
// A varint is at most 5 bytes and must fit in 32 bits; a varlong is at most
// 10 bytes. Overlong but in-range encodings are accepted on read (Kafka's
// Java reader accepts them too); the encoder always writes the shortest form.
//
// # Files
//
//	header.go    Header, ParseHeader, Validate, CRC and in-place patching
//	records.go   Iter (zero-allocation record iterator), ValidateRecords
//	encode.go    Encode (produce path), EncodeRecords (compaction path)
//	compress.go  codecs, all bounded by a decompressed-size cap
//	errors.go    FormatError (matches ErrCorrupt), TooLargeError (ErrTooLarge)
//
// # Safety
//
// Every decoder accepts arbitrary bytes: it returns an error instead of
// panicking, and no allocation is sized by a length field alone. Allocations
// are bounded by the bytes actually present or, for decompression, by a cap
// (DefaultMaxDecompressed unless Iter.MaxDecompressed says otherwise).
package batch
