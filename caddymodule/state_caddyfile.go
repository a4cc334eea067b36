package caddymodule

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// unmarshalState parses:
//
//	state {
//		redis {
//			address <host:port> | url <redis://...>
//			username <name>
//			password <placeholder>
//			db <n>
//			tls
//			tls_ca_file <pem>
//			tls_server_name <name>
//			key_prefix <prefix>
//			dial_timeout <dur>
//			read_timeout <dur>
//			write_timeout <dur>
//		}
//		advertise <url>
//	}
func unmarshalState(d *caddyfile.Dispenser, c *StateConfig) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "redis":
			if c.Redis != nil {
				return d.Err("redis already configured")
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			c.Redis = new(RedisConfig)
			if err := unmarshalRedis(d, c.Redis); err != nil {
				return err
			}
		case "advertise":
			if err := setOnce(d, &c.Advertise); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized state subdirective %q", d.Val())
		}
	}
	return nil
}

func unmarshalRedis(d *caddyfile.Dispenser, c *RedisConfig) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "address":
			err = setOnce(d, &c.Address)
		case "url":
			err = setOnce(d, &c.URL)
		case "username":
			err = setOnce(d, &c.Username)
		case "password":
			err = setOnce(d, &c.Password)
		case "db":
			err = setInt(d, &c.DB)
		case "tls":
			err = setFlag(d, &c.TLS)
		case "tls_ca_file":
			err = setOnce(d, &c.TLSCAFile)
		case "tls_server_name":
			err = setOnce(d, &c.TLSServerName)
		case "key_prefix":
			err = setOnce(d, &c.KeyPrefix)
		case "dial_timeout":
			err = setDuration(d, &c.DialTimeout)
		case "read_timeout":
			err = setDuration(d, &c.ReadTimeout)
		case "write_timeout":
			err = setDuration(d, &c.WriteTimeout)
		default:
			return d.Errf("unrecognized redis subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}
