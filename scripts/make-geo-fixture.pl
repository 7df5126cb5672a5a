#!/usr/bin/perl
# make-geo-fixture.pl: writes the tiny .mmdb that tests/unit/test_geo.c looks addresses up
# in. Only documentation ranges (RFC 5737 TEST-NET, RFC 3849 2001:db8::/32), so the
# fixture carries no real location data and no licence.
#
#   perl scripts/make-geo-fixture.pl OUT.mmdb
#
# The records deliberately mix the two schemas src/geo.c reads:
#   GeoIP2-City (MaxMind, DB-IP):  country.iso_code, subdivisions[0].iso_code,
#                                  city.names.en
#   ip-location-db (flat):         country_code, state1, city
# plus a few awkward records (only a country; a malformed country code; a city name that
# does not fit sluice's buffer); 192.0.2.192/26 is left out. The build epoch is fixed, so the output is byte-identical
# on every run.
use strict;
use warnings;

use MaxMind::DB::Writer::Tree;

my $out = shift @ARGV or die "usage: $0 OUT.mmdb\n";

my %types = (
    city => 'map', country => 'map', subdivisions => ['array', 'map'], names => 'map',
    iso_code => 'utf8_string', en => 'utf8_string', de => 'utf8_string',
    country_code => 'utf8_string', state1 => 'utf8_string', state2 => 'utf8_string',
    geoname_id => 'uint32',
);

my $tree = MaxMind::DB::Writer::Tree->new(
    ip_version            => 6,
    record_size           => 24,
    database_type         => 'sluice-test-city',
    languages             => ['en'],
    description           => { en => 'sluice unit-test fixture (documentation ranges only)' },
    merge_strategy        => 'none',
    alias_ipv6_to_ipv4    => 1,
    remove_reserved_networks => 0,    # every range below is reserved for documentation
    # "city" is a map in one schema and a string in the other: type by value for it.
    map_key_type_callback => sub {
        my ($key, $value) = @_;
        return 'utf8_string' if $key eq 'city' && !ref $value;
        return $types{$key} // die "make-geo-fixture: no type for key $key\n";
    },
);

my @records = (
    # MaxMind GeoIP2-City shape
    ['203.0.113.0/24', {
        country      => { iso_code => 'DE', names => { en => 'Germany', de => 'Deutschland' } },
        subdivisions => [ { iso_code => 'BE', names => { en => 'Berlin' } } ],
        city         => { geoname_id => 2950159, names => { en => 'Berlin', de => 'Berlin' } },
    }],
    ['198.51.100.0/24', {
        country      => { iso_code => 'US', names => { en => 'United States' } },
        subdivisions => [ { iso_code => 'NY', names => { en => 'New York' } } ],
        city         => { names => { en => 'New York' } },
    }],
    ['2001:db8::/33', {
        country => { iso_code => 'FR', names => { en => 'France' } },
        city    => { names => { en => 'Paris' } },
    }],
    # Country only (a GeoLite2-Country record)
    ['192.0.2.0/26', { country => { iso_code => 'CH' } }],
    # ip-location-db flat shape
    ['192.0.2.64/26', { country_code => 'JP', state1 => 'Tokyo', city => 'Shibuya' }],
    # A malformed country code and an overlong, multi-byte city name
    ['192.0.2.128/26', {
        country => { iso_code => 'XYZ' },
        city    => { names => { en => 'Llanfair' . ("\x{e9}" x 60) } },
    }],
    # Present in the tree but with none of the fields sluice reads
    ['2001:db8:8000::/33', { country => { names => { en => 'Nowhere' } } }],
);
$tree->insert_network(@$_) for @records;

$tree->_set_build_epoch(1700000000) if $tree->can('_set_build_epoch');

open my $fh, '>:raw', "$out.tmp" or die "$out.tmp: $!\n";
$tree->write_tree($fh);
close $fh or die "$out.tmp: $!\n";
rename "$out.tmp", $out or die "$out: $!\n";
