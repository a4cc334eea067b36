package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"strconv"
	"strings"
	"sync"
	"testing"
)

const testHMACKey = "0123456789abcdef0123456789abcdef-test-key"

func mustHMACKey(t *testing.T) *CheckpointKey {
	t.Helper()
	k, err := ParseCheckpointKey(CheckpointHMACSHA256, []byte(testHMACKey+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// ed25519PEM returns a fresh private key and its public key, both as PEM.
func ed25519PEM(t *testing.T) (priv, pub []byte) {
	t.Helper()
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	skDER, err := x509.MarshalPKCS8PrivateKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	pkDER, err := x509.MarshalPKIXPublicKey(pk)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: skDER}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkDER})
}

// signedAudit writes events in commits of the given sizes, every commit
// signed by k, and returns the file.
func signedAudit(t *testing.T, k *CheckpointKey, commits ...int) string {
	t.Helper()
	var out lineCollector
	r := newTestRecorder(t, []Sink{NewFuncSink("collect", out.write)})
	total := 0
	for _, n := range commits {
		total += n
	}
	recordN(t, r, 0, total)
	r.Close()
	path, _ := openTestSQLite(t)
	s, err := OpenSQLite(path, WithCheckpointKey(k))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	events := out.events(t)
	for _, n := range commits {
		batch := make([]Sealed, n)
		for i := range batch {
			batch[i] = Sealed{Event: &events[0], Line: out.lines[total-len(events)]}
			events = events[1:]
		}
		if err := s.WriteBatch(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func verifyWith(t *testing.T, path string, k *CheckpointKey) *VerifyReport {
	t.Helper()
	var opts []VerifyOption
	if k != nil {
		opts = append(opts, VerifyWithKey(k))
	}
	rep, err := VerifySQLite(context.Background(), path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// forgeFrom rewrites the chain from seq onward the way a forger without the
// key would: every later row relinked and rehashed, so the unkeyed chain
// verifies.
func forgeFrom(t *testing.T, db *sql.DB, seq int64) {
	t.Helper()
	var prev string
	if err := db.QueryRow(`SELECT COALESCE((SELECT event_hash FROM audit_events WHERE seq = ?), '')`, seq-1).Scan(&prev); err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query(`SELECT seq, json FROM audit_events WHERE seq >= ? ORDER BY seq`, seq)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		seq  int64
		line string
	}
	var all []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.seq, &r.line); err != nil {
			t.Fatal(err)
		}
		all = append(all, r)
	}
	rows.Close()
	for _, r := range all {
		fields, err := decodeObject([]byte(r.line))
		if err != nil {
			t.Fatal(err)
		}
		fields["prev_event_hash"], fields["event_hash"] = prev, ""
		raw, _ := json.Marshal(fields)
		h, err := Hash(raw)
		if err != nil {
			t.Fatal(err)
		}
		line, err := withEventHash(raw, h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`UPDATE audit_events SET json = ?, prev_event_hash = ?, event_hash = ? WHERE seq = ?`,
			string(line), prev, h, r.seq); err != nil {
			t.Fatal(err)
		}
		// The checkpoint columns are plain text too; only the signature
		// cannot be redone.
		mustExec(t, db, `UPDATE audit_checkpoints SET event_hash = '`+h+`' WHERE seq = `+strconv.FormatInt(r.seq, 10))
		prev = h
	}
}

func TestCheckpointsCatchForgery(t *testing.T) {
	for _, alg := range []string{CheckpointHMACSHA256, CheckpointEd25519} {
		t.Run(alg, func(t *testing.T) { testCheckpointsCatchForgery(t, alg) })
	}
}

func testCheckpointsCatchForgery(t *testing.T, alg string) {
	signer, verifier := mustHMACKey(t), mustHMACKey(t)
	if alg == CheckpointEd25519 {
		priv, pub := ed25519PEM(t)
		var err error
		if signer, err = ParseCheckpointKey(alg, priv); err != nil {
			t.Fatal(err)
		}
		if verifier, err = ParseVerifyKey(pub); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		tamper  func(t *testing.T, db *sql.DB)
		badSeq  int64
		problem string
	}{
		{name: "intact", tamper: func(*testing.T, *sql.DB) {}},
		{
			name: "deny rewritten as allow, every later hash recomputed",
			tamper: func(t *testing.T, db *sql.DB) {
				mustExec(t, db, `UPDATE audit_events SET json = replace(json, '"decision":"ALLOW"', '"decision":"DENY"') WHERE seq = 3`)
				forgeFrom(t, db, 3)
			},
			badSeq: 3, problem: "invalid signature",
		},
		{
			name: "rewritten and the checkpoints after it deleted",
			tamper: func(t *testing.T, db *sql.DB) {
				mustExec(t, db, `UPDATE audit_events SET json = replace(json, '"decision":"ALLOW"', '"decision":"DENY"') WHERE seq = 5`)
				forgeFrom(t, db, 5)
				mustExec(t, db, `DELETE FROM audit_checkpoints WHERE seq >= 5`)
				mustExec(t, db, `UPDATE sqlite_sequence SET seq = (SELECT MAX(id) FROM audit_checkpoints) WHERE name = 'audit_checkpoints'`)
			},
			badSeq: 5, problem: "not signed",
		},
		{
			name: "tail truncated past the last checkpoint, sqlite_sequence fixed",
			tamper: func(t *testing.T, db *sql.DB) {
				mustExec(t, db, `DELETE FROM audit_events WHERE seq > 4`)
				mustExec(t, db, `UPDATE sqlite_sequence SET seq = 4 WHERE name = 'audit_events'`)
			},
			badSeq: 5, problem: "the last rows were deleted",
		},
		{
			name: "last checkpoint deleted",
			tamper: func(t *testing.T, db *sql.DB) {
				mustExec(t, db, `DELETE FROM audit_checkpoints WHERE id = (SELECT MAX(id) FROM audit_checkpoints)`)
			},
			badSeq: 5, problem: "checkpoint(s) were deleted",
		},
		{
			name: "checkpoint moved to another row",
			tamper: func(t *testing.T, db *sql.DB) {
				mustExec(t, db, `UPDATE audit_checkpoints SET seq = 6, event_hash = (SELECT event_hash FROM audit_events WHERE seq = 6) WHERE seq = 7`)
			},
			badSeq: 5, problem: "invalid signature",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Commits of 2, 2 and 3 events: checkpoints sign seq 2, 4 and 7.
			path := signedAudit(t, signer, 2, 2, 3)
			db := rawDB(t, path)
			tt.tamper(t, db)
			db.Close()
			rep := verifyWith(t, path, verifier)
			if tt.problem == "" {
				if !rep.OK || rep.Events != 7 || rep.Checkpoints != 3 || rep.LastCheckpointSeq != 7 || rep.KeyID != verifier.ID() {
					t.Fatalf("intact file: %+v", rep)
				}
				return
			}
			if rep.OK || rep.FirstBadSeq != tt.badSeq || !strings.Contains(rep.Problem, tt.problem) {
				t.Fatalf("report %+v, want first_bad_seq %d and a problem with %q", rep, tt.badSeq, tt.problem)
			}
		})
	}
}

func mustExec(t *testing.T, db *sql.DB, stmt string) {
	t.Helper()
	if _, err := db.Exec(stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

func TestVerifyWithWrongKeyFails(t *testing.T) {
	path := signedAudit(t, mustHMACKey(t), 3)
	other, err := ParseCheckpointKey(CheckpointHMACSHA256, bytes.Repeat([]byte("k"), 40))
	if err != nil {
		t.Fatal(err)
	}
	if rep := verifyWith(t, path, other); rep.OK || !strings.Contains(rep.Problem, "not by the given") {
		t.Fatalf("verify with another key: %+v", rep)
	}
	_, pub := ed25519PEM(t)
	edKey, err := ParseVerifyKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if rep := verifyWith(t, path, edKey); rep.OK {
		t.Fatalf("verify with an ed25519 key: %+v", rep)
	}
}

func TestVerifyWithKeyRefusesUnsignedLog(t *testing.T) {
	path := fiveRowAudit(t)
	if rep := verifyWith(t, path, mustHMACKey(t)); rep.OK || !strings.Contains(rep.Problem, "no checkpoint") {
		t.Fatalf("unsigned log verified with a key: %+v", rep)
	}
}

func TestSignedFileRefusesUnkeyedWriter(t *testing.T) {
	path := signedAudit(t, mustHMACKey(t), 1)
	if _, err := OpenSQLite(path); err == nil || !strings.Contains(err.Error(), "checkpoint key") {
		t.Fatalf("an unkeyed writer opened a signed file: %v", err)
	}
	_, pub := ed25519PEM(t)
	pk, err := ParseVerifyKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSQLite(path, WithCheckpointKey(pk)); err == nil {
		t.Fatal("a public key was accepted for signing")
	}
}

func TestParseCheckpointKeyRefusesWeakOrWrongKeys(t *testing.T) {
	priv, pub := ed25519PEM(t)
	for _, tt := range []struct {
		alg      string
		material []byte
	}{
		{CheckpointHMACSHA256, []byte("short")},
		{CheckpointHMACSHA256, []byte("   \n")},
		{CheckpointEd25519, pub},
		{CheckpointEd25519, []byte("not pem")},
		{"hmac-md5", priv},
	} {
		if _, err := ParseCheckpointKey(tt.alg, tt.material); err == nil {
			t.Errorf("ParseCheckpointKey(%s, %.20q) succeeded", tt.alg, tt.material)
		}
	}
}

// Two writers of one file, both with the key, keep one chain that ends
// signed whichever committed last.
func TestTwoKeyedWritersShareOneSignedChain(t *testing.T) {
	path, _ := openTestSQLite(t)
	k := mustHMACKey(t)
	var recs []*Recorder
	for i := 0; i < 2; i++ {
		s, err := OpenSQLite(path, WithCheckpointKey(k))
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, newTestRecorder(t, []Sink{s}))
	}
	var wg sync.WaitGroup
	for w, r := range recs {
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 10; i++ {
					if err := r.Record(context.Background(), testEvent(w*1000+g*100+i)); err != nil {
						t.Error(err)
					}
				}
			}()
		}
	}
	wg.Wait()
	for _, r := range recs {
		r.Close()
	}
	if rep := verifyWith(t, path, k); !rep.OK || rep.Events != 80 || rep.LastCheckpointSeq != 80 {
		t.Fatalf("verify: %+v", rep)
	}
}
