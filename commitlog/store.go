package commitlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/internal/vfs"
)

// StoreOptions configure a Store. The zero value is valid.
type StoreOptions struct {
	// FS is the filesystem; nil means the operating system's.
	FS vfs.FS
	// Logger receives recovery reports, slow fsyncs and failures; nil
	// means slog.Default().
	Logger *slog.Logger
	// Registerer receives the store's Prometheus metrics; nil registers
	// nowhere (the metrics still count).
	Registerer prometheus.Registerer
	// MaxOpenFiles bounds the segment files held open across all logs;
	// idle files beyond it are closed, least recently used first. Files
	// with unsynced data stay open. Default 4096.
	MaxOpenFiles int
	// CheckpointInterval is how often recovery points are saved, which
	// bounds how much a crash makes the next open validate. Default 1s.
	CheckpointInterval time.Duration
	// CleanInterval is how often retention and compaction run. Default
	// 30s; negative disables the background cleaner (call Log.Clean).
	CleanInterval time.Duration
}

// Store is a data directory holding many logs. It owns the directory lock,
// the format version, the bound on open files, and the background work
// (checkpoints of recovery points, retention, compaction).
//
// Layout: DIR/FORMAT, DIR/LOCK, DIR/recovery-points, DIR/logs/NAME/...
type Store struct {
	dir    string
	fs     vfs.FS
	logger *slog.Logger
	opts   StoreOptions
	lock   io.Closer
	cache  fileCache
	m      *metrics

	mu struct {
		sync.Mutex
		logs   map[string]*Log
		rps    map[string]recoveryPoint // of logs not open, as last saved
		closed bool
	}
	ckptMu sync.Mutex // serializes checkpoint writes
	stop   chan struct{}
	wg     sync.WaitGroup
}

const (
	formatFile     = "FORMAT"
	lockFile       = "LOCK"
	checkpointFile = "recovery-points"
	logsDir        = "logs"
	formatPrefix   = "herald-data-format "
)

// OpenStore opens or creates the data directory dir. It fails with an error
// matching vfs.ErrLocked while another process has it open, and with a
// *FormatVersionError if a different Herald version wrote it in a format
// this one cannot read.
func OpenStore(dir string, opts StoreOptions) (*Store, error) {
	if opts.FS == nil {
		opts.FS = vfs.Default
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxOpenFiles <= 0 {
		opts.MaxOpenFiles = 4096
	}
	if opts.CheckpointInterval <= 0 {
		opts.CheckpointInterval = time.Second
	}
	if opts.CleanInterval == 0 {
		opts.CleanInterval = 30 * time.Second
	}
	st := &Store{dir: dir, fs: opts.FS, logger: opts.Logger, opts: opts, stop: make(chan struct{})}
	st.cache.max = opts.MaxOpenFiles
	st.mu.logs = map[string]*Log{}
	if err := st.fs.MkdirAll(dir); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	lock, err := st.fs.Lock(filepath.Join(dir, lockFile))
	if err != nil {
		return nil, fmt.Errorf("open data dir %s: %w", dir, err)
	}
	st.lock = lock
	if err := st.checkFormat(); err != nil {
		lock.Close()
		return nil, err
	}
	if err := st.fs.MkdirAll(filepath.Join(dir, logsDir)); err != nil {
		lock.Close()
		return nil, fmt.Errorf("create logs dir: %w", err)
	}
	if err := st.fs.SyncDir(dir); err != nil {
		lock.Close()
		return nil, fmt.Errorf("sync data dir: %w", err)
	}
	rps, err := readCheckpoint(st.fs, filepath.Join(dir, checkpointFile))
	if err != nil {
		st.logger.Warn("ignoring unreadable recovery points; logs will be validated whole", "err", err)
		rps = map[string]recoveryPoint{}
	}
	st.mu.rps = rps
	st.m = newMetrics(st)
	if opts.Registerer != nil {
		if err := st.m.register(opts.Registerer); err != nil {
			lock.Close()
			return nil, err
		}
	}
	st.wg.Add(1)
	go st.background()
	return st, nil
}

func (st *Store) checkFormat() error {
	path := filepath.Join(st.dir, formatFile)
	b, err := vfs.ReadFile(st.fs, path)
	if errors.Is(err, os.ErrNotExist) {
		if names, _ := st.fs.ReadDir(filepath.Join(st.dir, logsDir)); len(names) > 0 {
			return fmt.Errorf("data dir %s has logs but no %s file: not written by Herald, or damaged", st.dir, formatFile)
		}
		return vfs.WriteFileAtomic(st.fs, path, []byte(formatPrefix+strconv.Itoa(formatVersion)+"\n"))
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	v, ok := strings.CutPrefix(strings.TrimSpace(string(b)), formatPrefix)
	n, err := strconv.Atoi(v)
	if !ok || err != nil {
		return fmt.Errorf("%s: not a Herald format file (%q)", path, b)
	}
	if !versionReadable(n) {
		return &FormatVersionError{Path: st.dir, Found: n, Readable: readableVersions}
	}
	return nil
}

var logNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$`)

// OpenLog opens the named log, creating it if it does not exist, and
// recovers it (see Log.Recovery). Names are slash-separated paths of
// [A-Za-z0-9._-] elements. A log is open at most once per store.
func (st *Store) OpenLog(name string, opts Options) (*Log, error) {
	if !logNameRE.MatchString(name) || len(name) > 512 || strings.Contains("/"+name+"/", "/../") || strings.Contains("/"+name+"/", "/./") {
		return nil, fmt.Errorf("invalid log name %q: want slash-separated [A-Za-z0-9._-] elements, at most 512 bytes", name)
	}
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("log %s: %w", name, err)
	}
	st.mu.Lock()
	if st.mu.closed {
		st.mu.Unlock()
		return nil, ErrClosed
	}
	if _, ok := st.mu.logs[name]; ok {
		st.mu.Unlock()
		return nil, fmt.Errorf("log %s is already open", name)
	}
	rp, hasRP := st.mu.rps[name]
	st.mu.logs[name] = nil // reserve the name while opening
	st.mu.Unlock()

	l, err := st.openLog(name, filepath.Join(st.dir, logsDir, filepath.FromSlash(name)), opts, rp, hasRP)
	st.mu.Lock()
	defer st.mu.Unlock()
	if err != nil {
		delete(st.mu.logs, name)
		return nil, fmt.Errorf("open log %s: %w", name, err)
	}
	st.mu.logs[name] = l
	return l, nil
}

// Logs lists the names of the logs in the store, open or not.
func (st *Store) Logs() ([]string, error) {
	root := filepath.Join(st.dir, logsDir)
	var names []string
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			if _, suffix, ok := parseSegmentName(d.Name()); ok && suffix == segSuffix {
				rel, _ := filepath.Rel(root, filepath.Dir(path))
				names = append(names, filepath.ToSlash(rel))
				return filepath.SkipDir
			}
		}
		return nil
	})
	sort.Strings(names)
	return names, err
}

// DeleteLog removes a closed log and its files.
func (st *Store) DeleteLog(name string) error {
	st.mu.Lock()
	if _, open := st.mu.logs[name]; open {
		st.mu.Unlock()
		return fmt.Errorf("log %s is open", name)
	}
	delete(st.mu.rps, name)
	st.mu.Unlock()
	dir := filepath.Join(st.dir, logsDir, filepath.FromSlash(name))
	if err := st.fs.RemoveAll(dir); err != nil {
		return fmt.Errorf("delete log %s: %w", name, err)
	}
	return st.fs.SyncDir(filepath.Dir(dir))
}

// logClosed records a closing log's final recovery point.
func (st *Store) logClosed(l *Log, clean bool) {
	l.mu.Lock()
	rp := l.mu.rp
	l.mu.Unlock()
	st.mu.Lock()
	delete(st.mu.logs, l.name)
	if clean {
		st.mu.rps[l.name] = rp
	}
	st.mu.Unlock()
}

func (st *Store) openLogs() []*Log {
	st.mu.Lock()
	defer st.mu.Unlock()
	logs := make([]*Log, 0, len(st.mu.logs))
	for _, l := range st.mu.logs {
		if l != nil {
			logs = append(logs, l)
		}
	}
	sort.Slice(logs, func(i, j int) bool { return logs[i].name < logs[j].name })
	return logs
}

func (st *Store) background() {
	defer st.wg.Done()
	ckpt := time.NewTicker(st.opts.CheckpointInterval)
	defer ckpt.Stop()
	var clean <-chan time.Time
	if st.opts.CleanInterval > 0 {
		t := time.NewTicker(st.opts.CleanInterval)
		defer t.Stop()
		clean = t.C
	}
	for {
		select {
		case <-st.stop:
			return
		case <-ckpt.C:
			if err := st.Checkpoint(); err != nil {
				st.logger.Error("saving recovery points failed", "err", err)
			}
		case <-clean:
			for _, l := range st.openLogs() {
				if _, err := l.Clean(time.Now()); err != nil && !errors.Is(err, ErrClosed) {
					st.logger.Error("log cleaning failed", "log", l.name, "err", err)
				}
			}
		}
	}
}

// Checkpoint saves every open log's recovery point (and the index entries
// that go with it), so that the next open validates only what was written
// after. It runs every CheckpointInterval and at Close.
func (st *Store) Checkpoint() error {
	st.ckptMu.Lock()
	defer st.ckptMu.Unlock()
	logs := st.openLogs()
	fresh := make(map[string]recoveryPoint, len(logs))
	for _, l := range logs {
		l.mu.Lock()
		rp, active := l.mu.rp, l.mu.active
		l.mu.Unlock()
		if active.base == rp.seg {
			// Index entries up to the recovery point must be on disk for the
			// next open to start its scan near it. NB: they are written, not
			// fsynced; after a power loss recovery scans further back.
			if err := active.persistIndexes(false); err != nil {
				return err
			}
		}
		fresh[l.name] = rp
	}
	st.mu.Lock()
	changed := false
	for name, rp := range fresh {
		if old, ok := st.mu.rps[name]; !ok || old != rp {
			st.mu.rps[name] = rp
			changed = true
		}
	}
	all := make(map[string]recoveryPoint, len(st.mu.rps))
	for k, v := range st.mu.rps {
		all[k] = v
	}
	st.mu.Unlock()
	if !changed {
		return nil
	}
	return writeCheckpoint(st.fs, filepath.Join(st.dir, checkpointFile), all)
}

// Close closes every open log, saves recovery points and releases the
// directory lock.
func (st *Store) Close() error {
	st.mu.Lock()
	if st.mu.closed {
		st.mu.Unlock()
		return nil
	}
	st.mu.closed = true
	st.mu.Unlock()
	close(st.stop)
	st.wg.Wait()
	var errs []error
	for _, l := range st.openLogs() {
		if err := l.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	st.ckptMu.Lock()
	st.mu.Lock()
	all := st.mu.rps
	st.mu.Unlock()
	if err := writeCheckpoint(st.fs, filepath.Join(st.dir, checkpointFile), all); err != nil {
		errs = append(errs, err)
	}
	st.ckptMu.Unlock()
	if st.opts.Registerer != nil {
		st.m.unregister(st.opts.Registerer)
	}
	errs = append(errs, st.lock.Close())
	return errors.Join(errs...)
}

// Recovery-points file: magic "HERALDRP", version u16, reserved u16,
// count u32, then per log: name length u16, name, segment base i64, file id
// u64, position i64, next offset i64, max timestamp i64, its relative
// offset u32; then a CRC-32C of everything before it.
func writeCheckpoint(fsys vfs.FS, path string, rps map[string]recoveryPoint) error {
	names := make([]string, 0, len(rps))
	for n := range rps {
		names = append(names, n)
	}
	sort.Strings(names)
	b := make([]byte, 0, 16+len(rps)*64)
	b = append(b, ckptMagic...)
	b = binary.BigEndian.AppendUint16(b, formatVersion)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(names)))
	for _, n := range names {
		rp := rps[n]
		b = binary.BigEndian.AppendUint16(b, uint16(len(n)))
		b = append(b, n...)
		b = binary.BigEndian.AppendUint64(b, uint64(rp.seg))
		b = binary.BigEndian.AppendUint64(b, rp.fileID)
		b = binary.BigEndian.AppendUint64(b, uint64(rp.pos))
		b = binary.BigEndian.AppendUint64(b, uint64(rp.next))
		b = binary.BigEndian.AppendUint64(b, uint64(rp.maxTs))
		b = binary.BigEndian.AppendUint32(b, rp.maxTsRel)
	}
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	return vfs.WriteFileAtomic(fsys, path, b)
}

// readCheckpoint decodes the recovery-points file; a missing file is empty.
func readCheckpoint(fsys vfs.FS, path string) (map[string]recoveryPoint, error) {
	b, err := vfs.ReadFile(fsys, path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]recoveryPoint{}, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeCheckpoint(b, path)
}

func decodeCheckpoint(b []byte, path string) (map[string]recoveryPoint, error) {
	bad := func(why string) error { return &CorruptionError{Path: path, Reason: why} }
	if len(b) < 20 || string(b[:8]) != ckptMagic {
		return nil, bad("bad magic or short file")
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, bad("checksum mismatch")
	}
	if v := int(binary.BigEndian.Uint16(b[8:])); !versionReadable(v) {
		return nil, &FormatVersionError{Path: path, Found: v, Readable: readableVersions}
	}
	count := int(binary.BigEndian.Uint32(b[12:]))
	p := 16
	rps := make(map[string]recoveryPoint, min(count, len(body)/46))
	for i := 0; i < count; i++ {
		if p+2 > len(body) {
			return nil, bad("truncated entry")
		}
		n := int(binary.BigEndian.Uint16(body[p:]))
		p += 2
		if p+n+44 > len(body) {
			return nil, bad("truncated entry")
		}
		name := string(body[p : p+n])
		p += n
		rp := recoveryPoint{
			seg:      int64(binary.BigEndian.Uint64(body[p:])),
			fileID:   binary.BigEndian.Uint64(body[p+8:]),
			pos:      int64(binary.BigEndian.Uint64(body[p+16:])),
			next:     int64(binary.BigEndian.Uint64(body[p+24:])),
			maxTs:    int64(binary.BigEndian.Uint64(body[p+32:])),
			maxTsRel: binary.BigEndian.Uint32(body[p+40:]),
		}
		p += 44
		rps[name] = rp
	}
	if p != len(body) {
		return nil, bad("trailing bytes")
	}
	return rps, nil
}
