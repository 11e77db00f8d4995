package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestLineageSurvivesSIGKILL publishes one long flow through a real
// herald serve and SIGKILLs it mid-flow, after the lineage index file has
// a checkpoint; started again on the same data directory, the server loads
// the index file (cutting any torn tail) and answers the flow with every
// event whose publish was acknowledged, then goes on indexing.
func TestLineageSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := heraldBinary(t)
	data := filepath.Join(t.TempDir(), "data")
	var httpAddr string
	start := func() (*exec.Cmd, *syncBuffer) {
		cmd, addr, log := serveOn(t, bin, data, "--registry-addr", "")
		httpAddr = addr
		return cmd, log
	}
	post := func(path, ct, body string) (int, error) {
		resp, err := http.Post("http://"+httpAddr+path, ct, strings.NewReader(body))
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	event := func(i int) string {
		ext := ""
		if i > 0 {
			ext = fmt.Sprintf(`,"correlationid":"e-0","causationid":"e-%d"`, i-1)
		}
		return fmt.Sprintf(`{"specversion":"1.0","id":"e-%d","source":"/shop","type":"step","partitionkey":"k%d"%s,"data":{"i":%d}}`, i, i%7, ext, i)
	}
	flow := func() (map[string]bool, int) {
		resp, err := http.Get("http://" + httpAddr + "/v1/flows/e-0?limit=10000")
		if err != nil {
			return nil, 0
		}
		defer resp.Body.Close()
		var f struct{ Events []struct{ ID string } }
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&f) != nil {
			return nil, resp.StatusCode
		}
		ids := map[string]bool{}
		for _, e := range f.Events {
			ids[e.ID] = true
		}
		return ids, resp.StatusCode
	}

	serve, _ := start()
	if code, err := post("/v1/topics", "application/json", `{"name":"steps","partitions":3}`); err != nil || code != 201 {
		t.Fatalf("create topic: %d %v", code, err)
	}
	// Publish until the server dies; acked holds every acknowledged event.
	var mu sync.Mutex
	var acked []int
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 9000; i++ { // a flow answer holds at most 10,000 events
			code, err := post("/v1/topics/steps/events", "application/cloudevents+json", event(i))
			if err != nil {
				return
			}
			if code != 200 {
				t.Errorf("publish e-%d: %d", i, code)
				return
			}
			mu.Lock()
			acked = append(acked, i)
			mu.Unlock()
		}
	}()
	idxFile := filepath.Join(data, "lineage", "lineage.idx")
	waitFor(t, "a lineage index file with events and a checkpoint", 30*time.Second, func() bool {
		fi, err := os.Stat(idxFile)
		ids, _ := flow()
		return err == nil && fi.Size() > 4096 && len(ids) >= 200
	})
	time.Sleep(1200 * time.Millisecond) // past the next checkpoint (at most one a second)
	serve.Process.Signal(syscall.SIGKILL)
	serve.Wait()
	<-done
	mu.Lock()
	n := len(acked)
	mu.Unlock()
	t.Logf("%d events acknowledged before the kill", n)

	serve, log := start()
	defer func() {
		serve.Process.Signal(syscall.SIGTERM)
		serve.Wait()
	}()
	var ids map[string]bool
	waitFor(t, "the flow with every acknowledged event", 30*time.Second, func() bool {
		ids, _ = flow()
		for _, i := range acked {
			if !ids[fmt.Sprintf("e-%d", i)] {
				return false
			}
		}
		return true
	})
	if !strings.Contains(log.String(), "lineage index loaded") {
		t.Fatalf("the restarted server did not load the index file:\n%s", log.String())
	}
	if strings.Contains(log.String(), ".corrupt") {
		t.Fatalf("the index file was set aside as corrupt after a SIGKILL:\n%s", log.String())
	}
	if code, err := post("/v1/topics/steps/events", "application/cloudevents+json", event(n+1000)); err != nil || code != 200 {
		t.Fatalf("publish after restart: %d %v", code, err)
	}
	waitFor(t, "an event published after the restart in the flow", 30*time.Second, func() bool {
		ids, _ = flow()
		return ids[fmt.Sprintf("e-%d", n+1000)]
	})
}
