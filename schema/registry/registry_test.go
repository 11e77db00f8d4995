package registry_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/commitlog"
	"github.com/heraldhq/herald/eventlog"
	"github.com/heraldhq/herald/eventlog/embedded"
	"github.com/heraldhq/herald/schema/registry"
)

// env is a registry on a real broker in dir, served over HTTP.
type env struct {
	b   *broker.Broker
	reg *registry.Registry
	srv *httptest.Server
	cl  *sr.Client
}

func open(t testing.TB, dir string, mods ...func(*broker.Config)) *env {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	bc := broker.Config{DataDir: dir, Logger: logger}
	for _, m := range mods {
		m(&bc)
	}
	b, err := broker.Open(bc)
	if err != nil {
		t.Fatal(err)
	}
	l, err := embedded.New(embedded.Config{Broker: b})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Open(context.Background(), registry.Config{Log: l, Logger: logger})
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	e := &env{b: b, reg: reg, srv: httptest.NewServer(reg.Handler())}
	e.cl, err = sr.NewClient(sr.URLs(e.srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.close)
	return e
}

func (e *env) close() {
	if e.srv != nil {
		e.srv.Close()
		e.b.Close()
		e.srv = nil
	}
}

func code(err error) int {
	var re *sr.ResponseError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return 0
}

const userV1 = `{"type":"record","name":"User","namespace":"com.example","fields":[
	{"name":"id","type":"long"},
	{"name":"name","type":"string"}]}`

const userV2 = `{"type":"record","name":"User","namespace":"com.example","fields":[
	{"name":"id","type":"long"},
	{"name":"name","type":"string"},
	{"name":"email","type":["null","string"],"default":null}]}`

// userV3 adds a field without a default: not BACKWARD compatible.
const userV3 = `{"type":"record","name":"User","namespace":"com.example","fields":[
	{"name":"id","type":"long"},
	{"name":"name","type":"string"},
	{"name":"age","type":"int"}]}`

// TestFranzGoSRClient drives every method of franz-go's sr client against
// the registry, through Handler on net/http and through the registry's
// own Server (its fast loop and its handoffs to net/http).
func TestFranzGoSRClient(t *testing.T) {
	t.Run("server=handler", func(t *testing.T) { testFranzGoSRClient(t, false) })
	t.Run("server=own", func(t *testing.T) { testFranzGoSRClient(t, true) })
}

func testFranzGoSRClient(t *testing.T, ownServer bool) {
	e := open(t, t.TempDir())
	ctx := context.Background()
	cl := e.cl
	if ownServer {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		rs := e.reg.NewServer(registry.ServerConfig{})
		go rs.Serve(ln)
		t.Cleanup(func() { rs.Close() })
		if cl, err = sr.NewClient(sr.URLs("http://" + ln.Addr().String())); err != nil {
			t.Fatal(err)
		}
	}

	types, err := cl.SupportedTypes(ctx)
	if err != nil || !slices.Equal(types, []sr.SchemaType{sr.TypeAvro, sr.TypeProtobuf, sr.TypeJSON}) {
		t.Fatalf("SupportedTypes = %v, %v", types, err)
	}
	if cs, err := cl.Contexts(ctx); err != nil || !slices.Equal(cs, []string{"."}) {
		t.Fatalf("Contexts = %v, %v", cs, err)
	}
	if err := cl.DeleteContext(ctx, "."); err != nil {
		t.Fatalf("DeleteContext(.) of an empty registry: %v", err)
	}
	if err := cl.DeleteContext(ctx, ".other"); code(err) != registry.ErrContextNotFound {
		t.Fatalf("DeleteContext(.other) = %v", err)
	}

	// Register, re-register (same id, no new version), evolve.
	id1, err := cl.RegisterSchema(ctx, "users-value", sr.Schema{Schema: userV1}, -1, -1)
	if err != nil || id1 != 1 {
		t.Fatalf("RegisterSchema = %d, %v", id1, err)
	}
	if id, err := cl.RegisterSchema(ctx, "users-value", sr.Schema{Schema: userV1}, -1, -1); err != nil || id != id1 {
		t.Fatalf("re-register = %d, %v", id, err)
	}
	ss2, err := cl.CreateSchema(ctx, "users-value", sr.Schema{Schema: userV2})
	if err != nil || ss2.Version != 2 || ss2.ID != 2 || ss2.Subject != "users-value" {
		t.Fatalf("CreateSchema = %+v, %v", ss2, err)
	}
	// The same schema in another subject, written differently: same id.
	reformatted := strings.ReplaceAll(userV1, "\n\t", " ")
	if id, err := cl.RegisterSchema(ctx, "users-copy", sr.Schema{Schema: reformatted}, -1, -1); err != nil || id != id1 {
		t.Fatalf("same schema in another subject = %d, %v; want id %d", id, err, id1)
	}
	// Incompatible: 409 with a message naming the field.
	_, err = cl.RegisterSchema(ctx, "users-value", sr.Schema{Schema: userV3}, -1, -1)
	if code(err) != registry.ErrIncompatible || !strings.Contains(err.Error(), "age") {
		t.Fatalf("incompatible register = %v", err)
	}
	// Unparseable: 42201 with the position.
	_, err = cl.RegisterSchema(ctx, "bad", sr.Schema{Schema: `{"type":"record",`}, -1, -1)
	if code(err) != registry.ErrInvalidSchema || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("bad schema = %v", err)
	}

	if subs, err := cl.Subjects(ctx); err != nil || !slices.Equal(subs, []string{"users-copy", "users-value"}) {
		t.Fatalf("Subjects = %v, %v", subs, err)
	}
	if s, err := cl.SchemaByID(ctx, id1); err != nil || s.Schema != userV1 || s.Type != sr.TypeAvro {
		t.Fatalf("SchemaByID = %+v, %v", s, err)
	}
	if _, err := cl.SchemaByID(ctx, 99); code(err) != registry.ErrSchemaNotFound {
		t.Fatalf("SchemaByID(99) = %v", err)
	}
	if txt, err := cl.SchemaTextByID(ctx, id1); err != nil || txt != userV1 {
		t.Fatalf("SchemaTextByID = %q, %v", txt, err)
	}
	if subs, err := cl.SubjectsByID(ctx, id1); err != nil || !slices.Equal(subs, []string{"users-copy", "users-value"}) {
		t.Fatalf("SubjectsByID = %v, %v", subs, err)
	}
	if vs, err := cl.SchemaVersionsByID(ctx, id1); err != nil || len(vs) != 2 {
		t.Fatalf("SchemaVersionsByID = %v, %v", vs, err)
	}
	if vs, err := cl.SubjectVersions(ctx, "users-value"); err != nil || !slices.Equal(vs, []int{1, 2}) {
		t.Fatalf("SubjectVersions = %v, %v", vs, err)
	}
	latest, err := cl.SchemaByVersion(ctx, "users-value", -1)
	if err != nil || latest.Version != 2 || latest.ID != 2 {
		t.Fatalf("SchemaByVersion(latest) = %+v, %v", latest, err)
	}
	if _, err := cl.SchemaByVersion(ctx, "users-value", 7); code(err) != registry.ErrVersionNotFound {
		t.Fatalf("SchemaByVersion(7) = %v", err)
	}
	if _, err := cl.SchemaByVersion(ctx, "nobody", 1); code(err) != registry.ErrSubjectNotFound {
		t.Fatalf("SchemaByVersion(nobody) = %v", err)
	}
	if txt, err := cl.SchemaTextByVersion(ctx, "users-value", 1); err != nil || txt != userV1 {
		t.Fatalf("SchemaTextByVersion = %q, %v", txt, err)
	}
	if g, err := cl.SchemaByGUID(ctx, latest.GUID); err != nil || g.Schema.Schema != userV2 || latest.GUID == "" {
		t.Fatalf("SchemaByGUID(%q) = %+v, %v", latest.GUID, g, err)
	}
	if ids, err := cl.SchemaIDsByGUID(ctx, latest.GUID); err != nil || len(ids) != 1 || ids[0].ID != 2 {
		t.Fatalf("SchemaIDsByGUID = %v, %v", ids, err)
	}
	if all, err := cl.AllSchemas(ctx); err != nil || len(all) != 3 {
		t.Fatalf("AllSchemas = %v, %v", all, err)
	}
	if all, err := cl.AllSchemas(sr.WithParams(ctx, sr.LatestOnly, sr.SubjectPrefix("users-v"))); err != nil || len(all) != 1 || all[0].Version != 2 {
		t.Fatalf("AllSchemas(latestOnly) = %v, %v", all, err)
	}
	if ss, err := cl.Schemas(ctx, "users-value"); err != nil || len(ss) != 2 || ss[0].Schema.Schema != userV1 {
		t.Fatalf("Schemas = %v, %v", ss, err)
	}
	if got, err := cl.LookupSchema(ctx, "users-value", sr.Schema{Schema: userV2}); err != nil || got.Version != 2 || got.ID != 2 {
		t.Fatalf("LookupSchema = %+v, %v", got, err)
	}
	if _, err := cl.LookupSchema(ctx, "users-value", sr.Schema{Schema: userV3}); code(err) != registry.ErrSchemaNotFound {
		t.Fatalf("LookupSchema(unregistered) = %v", err)
	}
	if us, err := cl.SchemaUsagesByID(ctx, id1); err != nil || len(us) != 2 {
		t.Fatalf("SchemaUsagesByID = %v, %v", us, err)
	}

	// References: an Avro record using com.example.User from users-value v2.
	const order = `{"type":"record","name":"Order","namespace":"com.example","fields":[
		{"name":"buyer","type":"com.example.User"},{"name":"total","type":"double"}]}`
	refs := []sr.SchemaReference{{Name: "com.example.User", Subject: "users-value", Version: 2}}
	oid, err := cl.RegisterSchema(ctx, "orders-value", sr.Schema{Schema: order, References: refs}, -1, -1)
	if err != nil {
		t.Fatalf("register with reference: %v", err)
	}
	if got, err := cl.SchemaReferences(ctx, "users-value", 2); err != nil || len(got) != 1 || got[0].ID != oid {
		t.Fatalf("SchemaReferences = %+v, %v", got, err)
	}
	if _, err := cl.RegisterSchema(ctx, "orders-value", sr.Schema{Schema: order, References: []sr.SchemaReference{{Name: "com.example.User", Subject: "users-value", Version: 9}}}, -1, -1); code(err) != registry.ErrInvalidSchema || !strings.Contains(err.Error(), "users-value") {
		t.Fatalf("missing reference = %v", err)
	}
	// A referenced version cannot be deleted.
	if err := cl.DeleteSchema(ctx, "users-value", 2, sr.SoftDelete); code(err) != registry.ErrReferenceExists {
		t.Fatalf("delete referenced = %v", err)
	}

	// Compatibility config and checks.
	if res := cl.Compatibility(ctx); res[0].Err != nil || res[0].Level != sr.CompatBackward {
		t.Fatalf("Compatibility(global) = %+v", res[0])
	}
	if res := cl.Compatibility(ctx, "users-value"); code(res[0].Err) != registry.ErrSubjectLevelCompatibilityNotConfigured {
		t.Fatalf("Compatibility(subject) = %+v", res[0])
	}
	if res := cl.Compatibility(sr.WithParams(ctx, sr.DefaultToGlobal), "users-value"); res[0].Err != nil || res[0].Level != sr.CompatBackward {
		t.Fatalf("Compatibility(defaultToGlobal) = %+v", res[0])
	}
	if res := cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatNone}, "users-value"); res[0].Err != nil || res[0].Level != sr.CompatNone {
		t.Fatalf("SetCompatibility = %+v", res[0])
	}
	cr, err := cl.CheckCompatibility(sr.WithParams(ctx, sr.Verbose), "users-value", -1, sr.Schema{Schema: userV3})
	if err != nil || !cr.Is {
		t.Fatalf("CheckCompatibility under NONE = %+v, %v", cr, err)
	}
	if res := cl.ResetCompatibility(ctx, "users-value"); res[0].Err != nil || res[0].Level != sr.CompatNone {
		t.Fatalf("ResetCompatibility = %+v", res[0])
	}
	cr, err = cl.CheckCompatibility(sr.WithParams(ctx, sr.Verbose), "users-value", -1, sr.Schema{Schema: userV3})
	if err != nil || cr.Is || len(cr.Messages) == 0 || !strings.Contains(cr.Messages[0], "/age") {
		t.Fatalf("CheckCompatibility(latest) = %+v, %v", cr, err)
	}
	cr, err = cl.CheckCompatibility(ctx, "users-value", -2, sr.Schema{Schema: userV2})
	if err != nil || !cr.Is {
		t.Fatalf("CheckCompatibility(all versions) = %+v, %v", cr, err)
	}

	// Modes.
	if res := cl.Mode(ctx); res[0].Err != nil || res[0].Mode != sr.ModeReadWrite {
		t.Fatalf("Mode = %+v", res[0])
	}
	if res := cl.SetMode(ctx, sr.ModeReadOnly, "users-value"); res[0].Err != nil || res[0].Mode != sr.ModeReadOnly {
		t.Fatalf("SetMode = %+v", res[0])
	}
	if _, err := cl.RegisterSchema(ctx, "users-value", sr.Schema{Schema: userV3}, -1, -1); code(err) != registry.ErrOperationNotPermitted {
		t.Fatalf("register in READONLY = %v", err)
	}
	if res := cl.ResetMode(ctx, "users-value"); res[0].Err != nil || res[0].Mode != sr.ModeReadOnly {
		t.Fatalf("ResetMode = %+v", res[0])
	}
	if res := cl.Mode(ctx, "users-value"); code(res[0].Err) != registry.ErrSubjectLevelModeNotConfigured {
		t.Fatalf("Mode(subject) after reset = %+v", res[0])
	}
	// IMPORT: ids and versions given by the caller.
	if res := cl.SetMode(ctx, sr.ModeImport, "imported"); res[0].Err != nil {
		t.Fatalf("SetMode(IMPORT) = %+v", res[0])
	}
	imp, err := cl.CreateSchemaWithIDAndVersion(ctx, "imported", sr.Schema{Schema: `"string"`}, 100, 5)
	if err != nil || imp.ID != 100 || imp.Version != 5 {
		t.Fatalf("CreateSchemaWithIDAndVersion = %+v, %v", imp, err)
	}
	if _, err := cl.RegisterSchema(ctx, "users-value", sr.Schema{Schema: userV3}, 200, 3); code(err) != registry.ErrOperationNotPermitted {
		t.Fatalf("id outside IMPORT = %v", err)
	}
	if id, err := cl.RegisterSchema(ctx, "next", sr.Schema{Schema: `"int"`}, -1, -1); err != nil || id != 101 {
		t.Fatalf("after import, next id = %d, %v; want 101", id, err)
	}

	// Deletes: soft, then permanent; the error codes in between.
	if err := cl.DeleteSchema(ctx, "users-copy", 1, sr.HardDelete); code(err) != registry.ErrVersionNotSoftDeleted {
		t.Fatalf("hard delete first = %v", err)
	}
	if err := cl.DeleteSchema(ctx, "users-copy", 1, sr.SoftDelete); err != nil {
		t.Fatalf("soft delete: %v", err)
	}
	if err := cl.DeleteSchema(ctx, "users-copy", 1, sr.SoftDelete); code(err) != registry.ErrVersionSoftDeleted {
		t.Fatalf("soft delete twice = %v", err)
	}
	if vs, err := cl.SubjectVersions(sr.WithParams(ctx, sr.ShowDeleted), "users-copy"); err != nil || !slices.Equal(vs, []int{1}) {
		t.Fatalf("SubjectVersions(deleted) = %v, %v", vs, err)
	}
	if err := cl.DeleteSchema(ctx, "users-copy", 1, sr.HardDelete); err != nil {
		t.Fatalf("hard delete: %v", err)
	}
	if vs, err := cl.DeleteSubject(ctx, "orders-value", sr.HardDelete); code(err) != registry.ErrSubjectNotSoftDeleted {
		t.Fatalf("hard delete subject first = %v, %v", vs, err)
	}
	if vs, err := cl.DeleteSubject(ctx, "orders-value", sr.SoftDelete); err != nil || !slices.Equal(vs, []int{1}) {
		t.Fatalf("DeleteSubject soft = %v, %v", vs, err)
	}
	if _, err := cl.DeleteSubject(ctx, "orders-value", sr.SoftDelete); code(err) != registry.ErrSubjectSoftDeleted {
		t.Fatalf("DeleteSubject soft twice = %v", err)
	}
	if subs, err := cl.Subjects(sr.WithParams(ctx, sr.DeletedOnly)); err != nil || !slices.Equal(subs, []string{"orders-value"}) {
		t.Fatalf("Subjects(deletedOnly) = %v, %v", subs, err)
	}
	if vs, err := cl.DeleteSubject(ctx, "orders-value", sr.HardDelete); err != nil || !slices.Equal(vs, []int{1}) {
		t.Fatalf("DeleteSubject hard = %v, %v", vs, err)
	}
	// Now users-value v2 is no longer referenced.
	if err := cl.DeleteSchema(ctx, "users-value", 2, sr.SoftDelete); err != nil {
		t.Fatalf("delete no longer referenced: %v", err)
	}
	if got, err := cl.SchemaByVersion(ctx, "users-value", -1); err != nil || got.Version != 1 {
		t.Fatalf("latest after deleting v2 = %+v, %v", got, err)
	}
	// A new version after a soft delete continues the numbering.
	if ss, err := cl.CreateSchema(ctx, "users-value", sr.Schema{Schema: userV2}); err != nil || ss.Version != 3 || ss.ID != 2 {
		t.Fatalf("re-register after soft delete = %+v, %v", ss, err)
	}
}

// TestSerdeRoundTrip encodes and decodes Avro in the Confluent wire format
// with franz-go's Serde and schemas from the registry.
func TestSerdeRoundTrip(t *testing.T) {
	e := open(t, t.TempDir())
	ctx := context.Background()
	ss, err := e.cl.CreateSchema(ctx, "users-value", sr.Schema{Schema: userV2})
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.cl.SchemaByID(ctx, ss.ID)
	if err != nil {
		t.Fatal(err)
	}
	as := avro.MustParse(got.Schema)
	type user struct {
		ID    int64   `avro:"id"`
		Name  string  `avro:"name"`
		Email *string `avro:"email"`
	}
	var serde sr.Serde
	serde.Register(ss.ID, user{}, sr.EncodeFn(func(v any) ([]byte, error) { return avro.Marshal(as, v) }),
		sr.DecodeFn(func(b []byte, v any) error { return avro.Unmarshal(as, b, v) }))
	mail := "a@example.com"
	b, err := serde.Encode(user{ID: 7, Name: "ada", Email: &mail})
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 0 || int(b[4]) != ss.ID {
		t.Fatalf("wire header % x", b[:5])
	}
	var u user
	if err := serde.Decode(b, &u); err != nil || u.Name != "ada" || *u.Email != mail {
		t.Fatalf("decode = %+v, %v", u, err)
	}
}

// TestRestartKeepsIDsAndVersions reopens the broker and registry on the
// same directory: ids, versions, deletes, configs and modes survive.
func TestRestartKeepsIDsAndVersions(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	e := open(t, dir)
	for i, s := range []string{userV1, userV2} {
		if id, err := e.cl.RegisterSchema(ctx, "users-value", sr.Schema{Schema: s}, -1, -1); err != nil || id != i+1 {
			t.Fatalf("register %d = %d, %v", i, id, err)
		}
	}
	if _, err := e.cl.RegisterSchema(ctx, "other", sr.Schema{Schema: `{"type":"string"}`, Type: sr.TypeJSON}, -1, -1); err != nil {
		t.Fatal(err)
	}
	if err := e.cl.DeleteSchema(ctx, "other", 1, sr.SoftDelete); err != nil {
		t.Fatal(err)
	}
	if res := e.cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatFull}, "users-value"); res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	if res := e.cl.SetMode(ctx, sr.ModeReadOnly); res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	// Records another client wrote to the topic that do not decode, or
	// that would reassign an id, are skipped on load.
	l, err := embedded.New(embedded.Config{Broker: e.b})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, registry.DefaultTopic, 0, []eventlog.Record{
		{Key: []byte("garbage"), Value: []byte("{")},
		{Key: []byte(`{"keytype":"SCHEMA_ID","id":1,"magic":1}`), Value: []byte(`{"id":1,"schemaType":"AVRO","schema":"\"int\""}`)},
		{Key: []byte(`{"keytype":"SUBJECT_VERSION","subject":"ghost","version":1,"magic":1}`), Value: []byte(`{"id":77}`)},
	}); err != nil {
		t.Fatal(err)
	}
	e.close()

	e = open(t, dir)
	if subs, err := e.cl.Subjects(ctx); err != nil || !slices.Equal(subs, []string{"users-value"}) {
		t.Fatalf("subjects after restart = %v, %v", subs, err)
	}
	if vs, err := e.cl.SubjectVersions(ctx, "users-value"); err != nil || !slices.Equal(vs, []int{1, 2}) {
		t.Fatalf("versions after restart = %v, %v", vs, err)
	}
	for id, want := range map[int]string{1: userV1, 2: userV2} {
		if s, err := e.cl.SchemaByID(ctx, id); err != nil || s.Schema != want {
			t.Fatalf("schema %d after restart = %q, %v", id, s.Schema, err)
		}
	}
	if _, err := e.cl.SubjectVersions(ctx, "other"); code(err) != registry.ErrSubjectNotFound {
		t.Fatalf("soft delete after restart: %v", err)
	}
	if res := e.cl.Compatibility(ctx, "users-value"); res[0].Level != sr.CompatFull {
		t.Fatalf("config after restart = %+v", res[0])
	}
	if res := e.cl.Mode(ctx); res[0].Mode != sr.ModeReadOnly {
		t.Fatalf("mode after restart = %+v", res[0])
	}
	if res := e.cl.SetMode(ctx, sr.ModeReadWrite); res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	// Compatibility still checked against the stored versions (FULL).
	if _, err := e.cl.RegisterSchema(ctx, "users-value", sr.Schema{Schema: userV3}, -1, -1); code(err) != registry.ErrIncompatible {
		t.Fatalf("incompatible after restart = %v", err)
	}
	// The next id continues after the highest ever assigned.
	if id, err := e.cl.RegisterSchema(ctx, "new", sr.Schema{Schema: `"bytes"`}, -1, -1); err != nil || id != 4 {
		t.Fatalf("next id after restart = %d, %v; want 4", id, err)
	}
}

// TestDurableOnMemoryServer: on a server whose default durability is
// memory, the registry's topic is still fsync'd, so a restart keeps it.
func TestDurableOnMemoryServer(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	mem := func(c *broker.Config) { c.Durability = commitlog.Durability{Mode: commitlog.SyncMemory} }
	e := open(t, dir, mem)
	if id, err := e.cl.RegisterSchema(ctx, "users-value", sr.Schema{Schema: userV1}, -1, -1); err != nil || id != 1 {
		t.Fatalf("register: %d, %v", id, err)
	}
	e.close()
	e = open(t, dir, mem)
	if s, err := e.cl.SchemaByID(ctx, 1); err != nil || s.Schema != userV1 {
		t.Fatalf("after restart: %+v, %v", s, err)
	}
}
