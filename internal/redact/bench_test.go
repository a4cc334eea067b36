package redact

import (
	"strings"
	"testing"
)

const benchSize = 64 << 10

// benchOutput builds about 64 KiB of log-like output; every tenth line is a
// corpus secret when withSecrets is set.
func benchOutput(b *testing.B, withSecrets bool) string {
	secrets := loadJSONL[secretCase](b, "secrets.jsonl")
	var sb strings.Builder
	for i := 0; sb.Len() < benchSize; i++ {
		if withSecrets && i%10 == 0 {
			sb.WriteString(secrets[i%len(secrets)].Input)
			sb.WriteByte('\n')
			continue
		}
		sb.WriteString("2024-06-04T12:00:00Z INFO handler=items status=200 bytes=5123 path=/api/v1/items?page=2\n")
	}
	return sb.String()[:benchSize]
}

func benchmarkRedact(b *testing.B, withSecrets bool) {
	r, err := mustNew(b).With([]string{`acct-[0-9]{6}`}, []string{"brokered-value-0001"})
	if err != nil {
		b.Fatal(err)
	}
	in := benchOutput(b, withSecrets)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		_ = r.String(in)
	}
}

// BenchmarkRedact reports MB/s on 64 KiB outputs.
func BenchmarkRedact(b *testing.B) {
	b.Run("64KiB/clean", func(b *testing.B) { benchmarkRedact(b, false) })
	b.Run("64KiB/secrets", func(b *testing.B) { benchmarkRedact(b, true) })
}
