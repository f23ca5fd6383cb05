"""APT and dpkg: sources, resolver, fetch, .deb reading, dpkg database, maintainer scripts."""
