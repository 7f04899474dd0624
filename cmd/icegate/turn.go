package main

import (
	"errors"
	"fmt"

	"icegate/auth"
	"icegate/config"
	"icegate/turn"
)

// turnConfig translates the config file's schema into the relay's own
// Config. cfg must have passed config.Validate, which fills the parsed
// fields read here. Every value is carried as the file states it, the
// defaults included, so that turn's own defaults never decide for a file:
// a cap of 0 ("no cap" in the file) becomes turn.NoLimit, and a switch
// that is on by default becomes the No* field turn names it by.
func turnConfig(cfg *config.Config) turn.Config {
	l, r, a, p, m, st := cfg.Listen, cfg.Relay, cfg.Auth, cfg.Policy, cfg.Limits, cfg.STUN
	users := make([]auth.StaticUser, 0, len(a.Users))
	for _, u := range a.Users {
		users = append(users, auth.StaticUser{Name: u.Name, Password: u.Password, Key: u.KeyBytes})
	}
	out := turn.Config{
		Realm: cfg.Realm,
		Listen: turn.ListenConfig{
			Addrs:              l.Addrs,
			Port:               l.Port,
			TLSPort:            l.TLSPort,
			SocketBuffer:       l.SocketBuffer,
			SystemSocketBuffer: l.SocketBuffer == 0, // socket_buffer = 0
			NoSegmentation:     !l.SegmentationOn(),
			NoFreeBind:         !l.FreeBindOn(),
			NoUDP:              !l.UDPOn(),
			NoTCP:              !l.TCPOn(),
			NoTLS:              !l.TLSOn(),
			NoDTLS:             !l.DTLSOn(),
			ProxyFrom:          l.ProxyFromPrefixes,
		},
		TLS: turn.TLSConfig{
			CertFile:       cfg.TLS.CertFile,
			KeyFile:        cfg.TLS.KeyFile,
			ReloadInterval: cfg.TLS.ReloadIntervalDuration,
		},
		Relay: turn.RelayConfig{
			MinPort:    r.MinPort,
			MaxPort:    r.MaxPort,
			IPv4Bind:   r.IPv4BindAddr,
			NoIPv4:     !r.IPv4BindAddr.IsValid(), // ipv4_bind = ""
			IPv4Public: r.IPv4PublicAddr,
			IPv6Bind:   r.IPv6BindAddr,
			NoIPv6:     !r.IPv6BindAddr.IsValid(), // ipv6_bind = ""
			IPv6Public: r.IPv6PublicAddr,
			// ipv4_public = "auto", ipv6_public = "auto"
			IPv4Discover:     r.IPv4PublicAuto,
			IPv6Discover:     r.IPv6PublicAuto,
			DiscoverWith:     r.DiscoverWith,
			DiscoverInterval: r.DiscoverIntervalDuration,
			PrivateOK:        r.PrivateAllowed(),
			TCP:              r.TCPOn(),
			Shared:           r.SharedOn(),
			// relay.kernel_offload, "auto" by default (turn's zero is off)
			KernelOffload:           r.Offload(),
			KernelOffloadInterfaces: r.KernelOffloadInterfaces,
		},
		Auth: turn.AuthConfig{
			Users:             users,
			Secrets:           a.Secrets,
			Separator:         a.Separator,
			NoEphemeralSecret: !a.EphemeralSecretOn(),
		},
		Policy: turn.PolicyConfig{
			Presets: p.Presets,
			Allow:   p.AllowPrefixes,
			Deny:    p.DenyPrefixes,
		},
		Limits: turn.LimitsConfig{
			AllocationsPerUser:       capOrNoLimit(m.AllocationsPerUser),
			AllocationsTotal:         capOrNoLimit(m.AllocationsTotal),
			PermissionsPerAllocation: capOrNoLimit(m.PermissionsPerAllocation),
			DefaultLifetime:          m.DefaultLifetimeDuration,
			MaxLifetime:              m.MaxLifetimeDuration,
			BandwidthPerAllocation:   capOrNoLimit(m.BandwidthPerAllocation),
			UnauthenticatedRate:      capOrNoLimit(m.UnauthRate),
			UnauthenticatedBurst:     m.UnauthBurst,
			ConnectionsPerSource:     capOrNoLimit(m.ConnectionsPerSource),
		},
	}
	if st.Enabled() {
		out.RFC5780 = turn.RFC5780Config{
			Alternate:       st.AlternateAddr,
			AlternatePort:   st.AlternatePort,
			PrimaryPublic:   st.PrimaryPublicAddr,
			AlternatePublic: st.AlternatePublicAddr,
			RFC3489:         st.RFC3489On(),
		}
	}
	return out
}

// capOrNoLimit is a cap of the config file, where 0 means no cap, as
// turn.Config says it: there 0 means the default.
func capOrNoLimit(v int) int {
	if v == 0 {
		return turn.NoLimit
	}
	return v
}

// offloadStartError names the setting as the user wrote it, and where,
// when the relay could not start because relay.kernel_offload is "on" and
// the kernel offload cannot run; other errors pass unchanged.
func offloadStartError(cfg *config.Config, err error) error {
	var oe *turn.OffloadError
	if !errors.As(err, &oe) {
		return err
	}
	where := ""
	if r := cfg.Relay.KernelOffloadRange; r.Filename != "" {
		where = r.String() + ": "
	}
	return fmt.Errorf(`%srelay.kernel_offload = "on", but the kernel offload cannot run: %w ("auto" relays in user space when it cannot)`, where, oe.Err)
}
