package compat

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	xscram "github.com/xdg-go/scram"

	"github.com/heraldhq/herald/internal/tlstest"
)

// Clients of a server started with --users and --tls-cert: SASL over TLS
// (SASL_SSL) with every mechanism, as each client library does it.

const saslUser, saslPassword = "alice", "s3cret-pässword"

// startSecureServer runs herald serve with a users file holding alice and
// a TLS certificate for 127.0.0.1 signed by a throwaway CA.
func startSecureServer(t *testing.T) (*server, *tlstest.Files) {
	t.Helper()
	dir := t.TempDir()
	files := tlstest.New(t, dir)
	users := filepath.Join(dir, "users.json")
	runCmd(t, 30*time.Second, saslPassword+"\n", heraldBin, "user", "add", saslUser, "--users", users, "--iterations", "4096")
	s := startServerWith(t, &server{
		args:    []string{"--users", users, "--tls-cert", files.Cert, "--tls-key", files.Key},
		httpTLS: files.ClientConfig(t, false),
		kgoOpts: []kgo.Opt{kgo.DialTLSConfig(files.ClientConfig(t, false)), kgo.SASL(scram.Auth{User: saslUser, Pass: saslPassword}.AsSha512Mechanism())},
	})
	return s, files
}

// TestKcatSASLSSL: librdkafka produces and consumes over SASL_SSL with
// SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN, and fails to connect with a
// wrong password or without TLS.
func TestKcatSASLSSL(t *testing.T) {
	t.Parallel()
	kcat := requireTool(t, "kcat", kcatInstall)
	s, files := startSecureServer(t)
	const topic = "kcat-sasl"
	s.createTopic(t, topic, 1)
	conf := func(mech, pass string) []string {
		return []string{"-b", s.kafkaAddr, "-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=" + mech,
			"-X", "sasl.username=" + saslUser, "-X", "sasl.password=" + pass, "-X", "ssl.ca.location=" + files.CA}
	}
	var want []record
	for i, mech := range []string{"SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"} {
		r := record{Key: fmt.Sprintf("k%d", i), Value: "via " + mech, Partition: 0, Offset: int64(i)}
		want = append(want, r)
		runCmd(t, 60*time.Second, r.Key+":"+r.Value+"\n", kcat, append(conf(mech, saslPassword), "-P", "-t", topic, "-K:")...)
		out := runCmd(t, 60*time.Second, "", kcat, append(conf(mech, saslPassword), "-C", "-t", topic, "-e", "-o", "beginning", "-q", "-f", kcatFormat)...)
		requireSameRecords(t, "kcat -C with "+mech, want, parseKcat(t, out), false)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"wrong password", conf("SCRAM-SHA-512", "nope"), `SASL authentication error: authentication failed: SCRAM-SHA-512 for user "alice": wrong user name or password`},
		{"wrong PLAIN password", conf("PLAIN", "nope"), "SASL authentication error: authentication failed: wrong user name or password"},
		{"no TLS", []string{"-b", s.kafkaAddr, "-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=PLAIN",
			"-X", "sasl.username=" + saslUser, "-X", "sasl.password=" + saslPassword}, ""},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, kcat, append(tc.args, "-L", "-m", "5")...)
		out, err := cmd.CombinedOutput()
		cancel()
		if err == nil {
			t.Errorf("%s: kcat -L succeeded:\n%s", tc.name, out)
		} else if !strings.Contains(string(out), tc.want) {
			t.Errorf("%s: kcat -L output lacks %q:\n%s", tc.name, tc.want, out)
		}
	}
}

// TestSaramaSASLSSL: sarama produces and consumes over TLS with PLAIN and
// SCRAM-SHA-512 (sarama leaves SCRAM's computation to a client it is
// given: github.com/xdg-go/scram's, as its examples use).
func TestSaramaSASLSSL(t *testing.T) {
	t.Parallel()
	s, files := startSecureServer(t)
	const topic = "sarama-sasl"
	s.createTopic(t, topic, 1)
	for i, mech := range []sarama.SASLMechanism{sarama.SASLTypePlaintext, sarama.SASLTypeSCRAMSHA512, sarama.SASLTypeSCRAMSHA256} {
		cfg := saramaConfig(sarama.DefaultVersion)
		cfg.Net.TLS.Enable, cfg.Net.TLS.Config = true, files.ClientConfig(t, false)
		cfg.Net.SASL.Enable, cfg.Net.SASL.Mechanism = true, mech
		cfg.Net.SASL.User, cfg.Net.SASL.Password = saslUser, saslPassword
		switch mech {
		case sarama.SASLTypeSCRAMSHA512:
			cfg.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &saramaSCRAM{hash: xscram.SHA512} }
		case sarama.SASLTypeSCRAMSHA256:
			cfg.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &saramaSCRAM{hash: xscram.SHA256} }
		}
		cfg.Producer.Return.Successes = true
		prod, err := sarama.NewSyncProducer([]string{s.kafkaAddr}, cfg)
		if err != nil {
			t.Fatalf("%s: sarama.NewSyncProducer: %v", mech, err)
		}
		part, off, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder("via " + string(mech))})
		prod.Close()
		if err != nil || part != 0 || off != int64(i) {
			t.Fatalf("%s: sent to %d@%d: %v", mech, part, off, err)
		}
		cons, err := sarama.NewConsumer([]string{s.kafkaAddr}, cfg)
		if err != nil {
			t.Fatalf("%s: sarama.NewConsumer: %v", mech, err)
		}
		pc, err := cons.ConsumePartition(topic, 0, int64(i))
		if err != nil {
			cons.Close()
			t.Fatalf("%s: ConsumePartition: %v", mech, err)
		}
		select {
		case m := <-pc.Messages():
			if string(m.Value) != "via "+string(mech) {
				t.Errorf("%s: read %q", mech, m.Value)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("%s: no message in 30s", mech)
		}
		pc.Close()
		cons.Close()
	}
	// A wrong password is refused.
	cfg := saramaConfig(sarama.DefaultVersion)
	cfg.Net.TLS.Enable, cfg.Net.TLS.Config = true, files.ClientConfig(t, false)
	cfg.Net.SASL.Enable, cfg.Net.SASL.Mechanism = true, sarama.SASLTypePlaintext
	cfg.Net.SASL.User, cfg.Net.SASL.Password = saslUser, "nope"
	cfg.Metadata.Retry.Max = 0
	if cl, err := sarama.NewClient([]string{s.kafkaAddr}, cfg); err == nil {
		cl.Close()
		t.Fatal("sarama connected with a wrong password")
	} else if !strings.Contains(err.Error(), "SASL Authentication failed") && !strings.Contains(err.Error(), "out of available brokers") {
		t.Fatalf("wrong password: %v", err)
	}
}

// saramaSCRAM is sarama's SCRAMClient over github.com/xdg-go/scram.
type saramaSCRAM struct {
	hash xscram.HashGeneratorFcn
	conv *xscram.ClientConversation
}

func (c *saramaSCRAM) Begin(user, pass, authz string) error {
	cl, err := c.hash.NewClient(user, pass, authz)
	if err != nil {
		return err
	}
	c.conv = cl.NewConversation()
	return nil
}

func (c *saramaSCRAM) Step(challenge string) (string, error) { return c.conv.Step(challenge) }
func (c *saramaSCRAM) Done() bool                            { return c.conv.Done() }
