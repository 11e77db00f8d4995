package embedded

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/eventstore"
)

const crashDirEnv = "HERALD_ES_CRASH_CHILD_DIR"

// TestCrashChild is the process TestCrashKill kills: writers doing atomic
// two-stream appends, printing "ack W N" after each acknowledged one.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		return // only meaningful as TestCrashKill's child
	}
	s, err := Open(crashConfig(dir))
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	ctx := context.Background()
	var out sync.Mutex
	var wg sync.WaitGroup
	// Scavenging all the time: streams whose older events become hidden,
	// and compaction rewriting the segments the acknowledged events of the
	// writers below live in.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			name := fmt.Sprintf("scav-%d", i%20)
			evs := make([]eventstore.EventData, 50)
			for j := range evs {
				evs[j] = eventstore.EventData{ID: eventstore.NewID(), Type: "S", Data: []byte(strings.Repeat("s", 500))}
			}
			r, err := s.Append(ctx, name, eventstore.Any, evs...)
			if err != nil {
				fmt.Println("scav append:", err)
				os.Exit(1)
			}
			if err := s.SetMetadata(ctx, name, eventstore.StreamMetadata{TruncateBefore: r.Version - 9}); err != nil {
				fmt.Println("scav metadata:", err)
				os.Exit(1)
			}
			if i%5 == 4 {
				if _, err := s.Scavenge(ctx); err != nil {
					fmt.Println("scavenge:", err)
					os.Exit(1)
				}
			}
		}
	}()
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			left, right := fmt.Sprintf("left-%d", w), fmt.Sprintf("right-%d", w)
			info, err := s.StreamInfo(ctx, left)
			if err != nil {
				fmt.Println("info:", err)
				os.Exit(1)
			}
			n := info.Version + 1
			for ; ; n++ {
				exp, expR := eventstore.Exact(n-1), eventstore.Exact(2*n-1)
				if n == 0 {
					exp, expR = eventstore.NoStream, eventstore.NoStream
				}
				data := []byte(strings.Repeat("x", rand.IntN(2000)))
				_, err := s.AppendMulti(ctx, []eventstore.StreamAppend{
					{Stream: left, Expected: exp, Events: []eventstore.EventData{
						{ID: fmt.Sprintf("%d-%d-l", w, n), Type: "Left", Data: data}}},
					{Stream: right, Expected: expR, Events: []eventstore.EventData{
						{ID: fmt.Sprintf("%d-%d-r1", w, n), Type: "Right", Data: data},
						{ID: fmt.Sprintf("%d-%d-r2", w, n), Type: "Right"}}},
				})
				if err != nil {
					fmt.Println("append:", err)
					os.Exit(1)
				}
				out.Lock()
				fmt.Printf("ack %d %d\n", w, n)
				out.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestCrashKill SIGKILLs a process appending to the store, several times,
// and checks after each restart that every acknowledged append is there and
// that no multi-stream append is visible in part.
func TestCrashKill(t *testing.T) {
	dir := t.TempDir()
	acked := map[int]int64{} // writer -> highest acknowledged n
	loadedRounds := 0
	kills := 5
	if os.Getenv("HERALD_LONG") != "" {
		kills = 30
	}
	for round := 0; round < kills; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		deadline := time.After(time.Duration(150+rand.IntN(400)) * time.Millisecond)
		got := 0
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break read
				}
				var w int
				var n int64
				if _, err := fmt.Sscanf(l, "ack %d %d", &w, &n); err != nil {
					t.Fatalf("child: %s", l)
				}
				acked[w] = max(acked[w], n)
				got++
			case <-deadline:
				if got == 0 {
					deadline = time.After(100 * time.Millisecond) // wait for the child to start writing
					continue
				}
				break read
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		for range lines {
			// Lines the child wrote before dying were acknowledged too,
			// but we count only what we read before the kill: a subset.
		}
		cmd.Wait()

		s, err := Open(crashConfig(dir))
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		if d := sameIndex(s.streams, scannedIndex(t, s)); d != "" {
			t.Fatalf("round %d: the index opened (from the index file: %v, then %d records scanned) differs from a scan of the whole log: %s",
				round, s.indexLoaded, s.indexScanned, d)
		}
		if s.indexLoaded {
			loadedRounds++
		}
		ctx := context.Background()
		for w := 0; w < 4; w++ {
			l, errL := s.ReadStream(ctx, fmt.Sprintf("left-%d", w), eventstore.ReadStreamOptions{Max: 1 << 30})
			r, errR := s.ReadStream(ctx, fmt.Sprintf("right-%d", w), eventstore.ReadStreamOptions{Max: 1 << 30})
			if a, ok := acked[w]; ok {
				if errL != nil || errR != nil {
					t.Fatalf("round %d writer %d: acknowledged up to %d, read: %v / %v", round, w, a, errL, errR)
				}
				if int64(len(l)) < a+1 {
					t.Fatalf("round %d writer %d: acknowledged %d appends, %d survived", round, w, a+1, len(l))
				}
			} else if errL != nil && !errors.Is(errL, eventstore.ErrStreamNotFound) {
				t.Fatal(errL)
			}
			if 2*len(l) != len(r) {
				t.Fatalf("round %d writer %d: partial multi-stream append visible: left %d events, right %d (want twice left)", round, w, len(l), len(r))
			}
			for i, e := range l {
				if e.ID != fmt.Sprintf("%d-%d-l", w, i) || r[2*i].ID != fmt.Sprintf("%d-%d-r1", w, i) || r[2*i+1].ID != fmt.Sprintf("%d-%d-r2", w, i) {
					t.Fatalf("round %d writer %d: event %d is %s / %s", round, w, i, e.ID, r[2*i].ID)
				}
				if r[2*i].Position != e.Position+1 {
					t.Fatalf("round %d: multi-stream append not contiguous in $all", round)
				}
			}
		}
		for i := 0; i < 20; i++ {
			name := fmt.Sprintf("scav-%d", i)
			info, err := s.StreamInfo(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if info.Version < 0 {
				continue
			}
			evs, err := s.ReadStream(ctx, name, eventstore.ReadStreamOptions{Max: 1 << 30})
			if err != nil {
				t.Fatalf("round %d: read %s after a crash during scavenging: %v", round, name, err)
			}
			if len(evs) == 0 || evs[len(evs)-1].Version != info.Version {
				t.Fatalf("round %d: %s reads %d events, last version %d", round, name, len(evs), info.Version)
			}
			for j := 1; j < len(evs); j++ {
				if evs[j].Version != evs[j-1].Version+1 {
					t.Fatalf("round %d: %s has a gap at %d", round, name, evs[j].Version)
				}
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: acknowledged %v, all present; index from the file %v, %d records scanned after it", round, acked, s.indexLoaded, s.indexScanned)
	}
	if loadedRounds == 0 {
		t.Fatal("no reopen used a saved index: the saves were not exercised")
	}
	if len(acked) == 0 {
		t.Fatal("no append was ever acknowledged")
	}
}

// crashConfig makes small segments so that compaction has sealed segments
// to rewrite while the writers run, and saves the index often, so kills
// land before, during and after saves.
func crashConfig(dir string) Config {
	return Config{Dir: dir, SegmentBytes: 256 << 10, MaxAppendBytes: 128 << 10,
		IndexCheckpointRecords: 300, indexCheckEvery: 10 * time.Millisecond}
}
