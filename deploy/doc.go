// Package deploy holds what runs icegate as a service: the systemd unit
// (systemd/icegate.service) and the Debian package's maintainer scripts
// (debian/), which `make deb` assembles with dpkg-deb. The package has no
// code; its tests check those files with the tools that consume them
// (systemd-analyze verify, dpkg-deb, dpkg).
package deploy
