package commitlog

import (
	"errors"
	"fmt"

	"github.com/heraldhq/herald/commitlog/batch"
)

var (
	// ErrClosed is returned by every operation on a Log or Store after Close.
	ErrClosed = errors.New("commitlog: closed")

	// ErrCorrupt matches every corruption error: errors.Is(err, ErrCorrupt)
	// holds for *CorruptionError and for a record batch that fails its CRC.
	ErrCorrupt = batch.ErrCorrupt

	// ErrTooLarge matches a batch refused for its size (*batch.TooLargeError
	// names the size and the limit).
	ErrTooLarge = batch.ErrTooLarge

	// ErrOffsetOutOfRange is matched by *OffsetOutOfRangeError.
	ErrOffsetOutOfRange = errors.New("offset out of range")

	// ErrLogFailed is matched when a Log stopped accepting writes after an
	// I/O error it could not undo (a failed fsync leaves the page cache in an
	// unknown state). Reopening the log runs recovery.
	ErrLogFailed = errors.New("commitlog: log failed")

	// ErrInvalidBatch is matched when an appended batch is well formed but
	// not acceptable to a log (for example it has no records).
	ErrInvalidBatch = errors.New("invalid record batch")

	// ErrUnsupportedFormat is matched by *FormatVersionError.
	ErrUnsupportedFormat = errors.New("unsupported format version")
)

// CorruptionError reports bytes on disk that fail validation where they
// should be intact: inside a sealed segment or below the recovery point. It is
// never returned for a torn tail, which recovery truncates instead.
type CorruptionError struct {
	Path   string // file holding the bad bytes
	Pos    int64  // byte position in the file
	Reason string
	Err    error // underlying decoder error, if any
}

func (e *CorruptionError) Error() string {
	s := fmt.Sprintf("commitlog: corruption in %s at byte %d: %s", e.Path, e.Pos, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptionError) Is(target error) bool { return target == ErrCorrupt }

func (e *CorruptionError) Unwrap() error { return e.Err }

// IsCorruption reports whether err is, or wraps, a corruption error.
func IsCorruption(err error) bool { return errors.Is(err, ErrCorrupt) }

// OffsetOutOfRangeError is returned by reads outside [Start, End].
type OffsetOutOfRangeError struct {
	Offset, Start, End int64
}

func (e *OffsetOutOfRangeError) Error() string {
	return fmt.Sprintf("offset %d out of range [%d, %d]", e.Offset, e.Start, e.End)
}

// Is makes errors.Is(err, ErrOffsetOutOfRange) true.
func (e *OffsetOutOfRangeError) Is(target error) bool { return target == ErrOffsetOutOfRange }

// FormatVersionError is returned when a file or directory was written in a
// format this build cannot read.
type FormatVersionError struct {
	Path     string
	Found    int
	Readable []int
}

func (e *FormatVersionError) Error() string {
	return fmt.Sprintf("%s has format version %d; this Herald reads format versions %v and writes %d",
		e.Path, e.Found, e.Readable, e.Readable[len(e.Readable)-1])
}

// Is makes errors.Is(err, ErrUnsupportedFormat) true.
func (e *FormatVersionError) Is(target error) bool { return target == ErrUnsupportedFormat }
