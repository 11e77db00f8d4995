package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestSubCrash SIGKILLs a real herald serve ten times while it pushes to a
// webhook that fails one call in five and while a client pulls and acks
// an exactly-once subscription. After a last restart every published event
// was acknowledged by the webhook at least once, and no event of the
// exactly-once subscription was acknowledged twice.
func TestSubCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and kills it ten times")
	}
	dir := t.TempDir()
	bin := heraldBinary(t)
	kafkaAddr, httpAddr := freeAddr(t), freeAddr(t)
	api := "http://" + httpAddr

	// The webhook: fails every fifth call; records what it acknowledged.
	var calls atomic.Int64
	var mu sync.Mutex
	hooked := map[string]int{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1)%5 == 0 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		mu.Lock()
		hooked[r.Header.Get("Herald-Message-Id")]++
		mu.Unlock()
	}))
	defer hook.Close()

	var serveLog bytes.Buffer
	var serve *exec.Cmd
	start := func() {
		serve = exec.Command(bin, "serve", "--data", filepath.Join(dir, "data"), "--kafka-addr", kafkaAddr, "--http-addr", httpAddr)
		serve.Stdout, serve.Stderr = &serveLog, &serveLog
		if err := serve.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "herald serve to be ready", 60*time.Second, func() bool {
			resp, err := http.Get(api + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	}
	kill := func() {
		serve.Process.Signal(syscall.SIGKILL)
		serve.Wait()
	}
	call := func(method, path string, body, out any) (int, error) {
		raw, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, api+path, bytes.NewReader(raw))
		c := http.Client{Timeout: 10 * time.Second}
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if out != nil && resp.StatusCode == 200 {
			if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
				return 0, err
			}
		}
		return resp.StatusCode, nil
	}

	start()
	defer func() {
		if serve.ProcessState == nil {
			serve.Process.Signal(syscall.SIGTERM)
			serve.Wait()
		}
		if t.Failed() {
			t.Logf("herald serve log:\n%s", tail(serveLog.String(), 4000))
		}
	}()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 3, 1, nil, "events"); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	for _, c := range []struct {
		name string
		def  map[string]any
	}{
		{"hook", map[string]any{"topic": "events", "pushConfig": map[string]any{"pushEndpoint": hook.URL},
			"retryPolicy": map[string]any{"minimumBackoff": "0.1s", "maximumBackoff": "1s"}}},
		{"eo", map[string]any{"topic": "events", "enableExactlyOnceDelivery": true}},
	} {
		if st, err := call("PUT", "/v1/subscriptions/"+c.name, c.def, nil); st != 200 || err != nil {
			t.Fatalf("create %s: %d %v", c.name, st, err)
		}
	}

	// The exactly-once puller: runs across the kills; counts successful
	// acknowledgements per message.
	var published sync.Map // message id -> true
	eoAcked := map[string]int{}
	var eoMu sync.Mutex
	stop := make(chan struct{})
	pullerDone := make(chan struct{})
	go func() {
		defer close(pullerDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			var pr struct {
				ReceivedMessages []struct {
					AckID   string `json:"ackId"`
					Message struct {
						MessageID string `json:"messageId"`
					} `json:"message"`
				} `json:"receivedMessages"`
			}
			if st, err := call("POST", "/v1/subscriptions/eo:pull", map[string]any{"maxMessages": 100, "returnImmediately": true}, &pr); err != nil || st != 200 {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			if len(pr.ReceivedMessages) == 0 {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			ids := make([]string, len(pr.ReceivedMessages))
			for i, r := range pr.ReceivedMessages {
				ids[i] = r.AckID
			}
			var ar struct {
				InvalidAckIDs []string `json:"invalidAckIds"`
			}
			if st, err := call("POST", "/v1/subscriptions/eo:acknowledge", map[string]any{"ackIds": ids}, &ar); err != nil || st != 200 {
				continue // unknown outcome: not counted
			}
			bad := map[string]bool{}
			for _, id := range ar.InvalidAckIDs {
				bad[id] = true
			}
			eoMu.Lock()
			for _, r := range pr.ReceivedMessages {
				if !bad[r.AckID] {
					eoAcked[r.Message.MessageID]++
				}
			}
			eoMu.Unlock()
		}
	}()

	produce := func(n int, round int) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr), kgo.RecordRetries(2), kgo.ProduceRequestTimeout(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		for i := range n {
			rec := &kgo.Record{Topic: "events", Key: []byte(fmt.Sprintf("k%d", i%17)), Value: []byte(fmt.Sprintf("r%d-%d", round, i)),
				Headers: []kgo.RecordHeader{{Key: "ce_specversion", Value: []byte("1.0")}, {Key: "ce_id", Value: []byte(fmt.Sprintf("%d-%d", round, i))},
					{Key: "ce_source", Value: []byte("crash")}, {Key: "ce_type", Value: []byte("Crash")}}}
			cl.Produce(context.Background(), rec, func(r *kgo.Record, err error) {
				if err == nil {
					published.Store(fmt.Sprintf("%d-%d", r.Partition, r.Offset), true)
				}
			})
		}
		cl.Flush(context.Background())
	}

	const rounds = 10
	for round := range rounds {
		produceDone := make(chan struct{})
		go func() {
			defer close(produceDone)
			produce(200, round)
		}()
		time.Sleep(time.Duration(200+rand.IntN(600)) * time.Millisecond)
		kill()
		<-produceDone
		start()
	}
	count := func() int {
		n := 0
		published.Range(func(_, _ any) bool { n++; return true })
		return n
	}
	total := count()
	if total == 0 {
		t.Fatal("nothing was published")
	}
	waitFor(t, "the webhook to acknowledge every published event", 90*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		missing := 0
		published.Range(func(k, _ any) bool {
			if hooked[k.(string)] == 0 {
				missing++
			}
			return true
		})
		return missing == 0
	})
	waitFor(t, "the exactly-once puller to acknowledge every published event", 60*time.Second, func() bool {
		eoMu.Lock()
		defer eoMu.Unlock()
		missing := 0
		published.Range(func(k, _ any) bool {
			if eoAcked[k.(string)] == 0 {
				missing++
			}
			return true
		})
		return missing == 0
	})
	close(stop)
	<-pullerDone
	eoMu.Lock()
	defer eoMu.Unlock()
	for id, n := range eoAcked {
		if n > 1 {
			t.Errorf("exactly-once: message %s acknowledged %d times", id, n)
		}
	}
	mu.Lock()
	redelivered := 0
	for _, n := range hooked {
		if n > 1 {
			redelivered++
		}
	}
	mu.Unlock()
	t.Logf("%d events published over %d kills; webhook got %d calls, %d events more than once; exactly-once acks %d",
		total, rounds, calls.Load(), redelivered, len(eoAcked))
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
