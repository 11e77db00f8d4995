package batch

import (
	"errors"
	"fmt"
)

// ErrCorrupt is matched (errors.Is) by every error that reports bytes which
// are not a well-formed record batch, including a CRC mismatch.
var ErrCorrupt = errors.New("corrupt record batch")

// ErrTooLarge is matched (errors.Is) by *TooLargeError and by the error Iter
// returns when decompressed records would exceed the cap.
var ErrTooLarge = errors.New("record batch too large")

// FormatError reports a malformed field. It matches ErrCorrupt.
type FormatError struct {
	// Field names the bad field: "magic", "batchLength", "crc",
	// "record[3].keyLength", ...
	Field string
	// Value is the offending value as read (or the relevant byte count).
	Value int64
	// Reason says what is wrong with it.
	Reason string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("corrupt record batch: %s = %d: %s", e.Field, e.Value, e.Reason)
}

// Is reports whether target is ErrCorrupt.
func (e *FormatError) Is(target error) bool { return target == ErrCorrupt }

// TooLargeError reports a batch larger than a configured limit. It matches
// ErrTooLarge.
type TooLargeError struct {
	Size  int // bytes in the batch
	Limit int // the limit it exceeds
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("record batch of %d bytes exceeds the limit of %d bytes", e.Size, e.Limit)
}

// Is reports whether target is ErrTooLarge.
func (e *TooLargeError) Is(target error) bool { return target == ErrTooLarge }

func corrupt(field string, value int64, reason string) error {
	return &FormatError{Field: field, Value: value, Reason: reason}
}
