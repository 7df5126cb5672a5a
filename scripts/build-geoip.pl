#!/usr/bin/perl
# build-geoip.pl: builds sluice's default geo database, a GeoIP2-Country-shaped .mmdb,
# from the country ranges Debian's tor-geoipdb package ships.
#
#   perl scripts/build-geoip.pl OUT.mmdb [GEOIP GEOIP6]
#
# GEOIP and GEOIP6 default to /usr/share/tor/geoip and /usr/share/tor/geoip6. Their lines
# are "INTLOW,INTHIGH,CC" (IPv4) and "V6LOW,V6HIGH,CC" (IPv6), inclusive ranges converted
# by Tor from the IPFire Location database (CC BY-SA 4.0); see docs/GEO.md. Each record
# written is {country => {iso_code => "US"}}, the path a GeoIP2/GeoLite2 Country database
# uses, so src/geo.c reads this file and MaxMind's the same way.
#
# The build epoch is SOURCE_DATE_EPOCH when set, otherwise the "Generated:" date of the
# IPFire export, so the same input always gives the same file. The output is written to
# OUT.tmp and renamed, so an interrupted build never leaves a half-written database for
# make to consider up to date.
use strict;
use warnings;

use MaxMind::DB::Writer::Tree;
use Time::Local qw(timegm);

my $out = shift @ARGV or die "usage: $0 OUT.mmdb [GEOIP GEOIP6]\n";
my $v4  = shift @ARGV // '/usr/share/tor/geoip';
my $v6  = shift @ARGV // '/usr/share/tor/geoip6';

my %month = (Jan => 0, Feb => 1, Mar => 2, Apr => 3, May => 4, Jun => 5,
             Jul => 6, Aug => 7, Sep => 8, Oct => 9, Nov => 10, Dec => 11);

# The export date from the IPFire header, for the description and the build epoch.
my ($generated, $generated_epoch);
{
    open my $fh, '<', $v4 or die "$v4: $!\n";
    while (my $line = <$fh>) {
        last if $line !~ /^#/;
        if ($line =~ /^#\s*Generated:\s*\w+,\s*(\d+)\s+(\w+)\s+(\d+)\s+(\d+):(\d+):(\d+)/
            && exists $month{$2}) {
            $generated = sprintf '%04d-%02d-%02d', $3, $month{$2} + 1, $1;
            $generated_epoch = timegm($6, $5, $4, $1, $month{$2}, $3);
            last;
        }
    }
    close $fh;
}

# One hash per country code, shared by every range of that country: the writer stores
# identical data once either way; sharing just avoids building 660k small hashes.
my %record;
sub record_for {
    my $cc = shift;
    return $record{$cc} //= { country => { iso_code => $cc } };
}

# Ranges starting inside these are never inserted: the tree aliases them to the IPv4
# space (alias_ipv6_to_ipv4) and the writer refuses inserts there. Aliasing is better
# data anyway: the tor files give all of 2002::/16 (6to4) one country, while through the
# alias 2002:0808:0808:: finds the country of the IPv4 address it embeds, 8.8.8.8.
sub aliased {
    my $ip = lc shift;
    return $ip =~ /^(?:2002:|2001:0*:|::ffff:)/;    # 6to4, Teredo (2001:0::/32), v4-mapped
}

sub read_ranges {
    my ($path, $conv, $tree) = @_;
    open my $fh, '<', $path or die "$path: $!\n";
    my ($n, $skipped) = (0, 0);
    while (my $line = <$fh>) {
        next if $line =~ /^#/;
        chomp $line;
        next if $line eq '';
        my ($lo, $hi, $cc) = split /,/, $line;
        # "??" and empty codes are ranges IPFire could not place: leave them out, so a
        # lookup there is "not found" rather than a made-up country.
        if (!defined $cc || $cc !~ /^[A-Z]{2}$/) { $skipped++; next; }
        ($lo, $hi) = $conv->($lo, $hi);
        if (aliased($lo)) { $skipped++; next; }
        $tree->insert_range($lo, $hi, record_for($cc));
        $n++;
    }
    close $fh;
    return ($n, $skipped);
}

sub int_to_v4 {
    my $i = shift;
    return join '.', ($i >> 24) & 255, ($i >> 16) & 255, ($i >> 8) & 255, $i & 255;
}

my $desc = 'Country data from the IPFire Location database (https://location.ipfire.org/), '
    . 'licensed CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/), as converted '
    . 'by the Tor Project (Debian package tor-geoipdb)'
    . ($generated ? ", export generated $generated" : '')
    . '. Reshaped to MaxMind DB format by sluice scripts/build-geoip.pl.';

my $tree = MaxMind::DB::Writer::Tree->new(
    ip_version            => 6,
    record_size           => 24,
    database_type         => 'sluice-geoip-country',
    languages             => ['en'],
    # Ranges never overlap, so there is nothing to merge: plain inserts.
    merge_strategy        => 'none',
    alias_ipv6_to_ipv4    => 1,
    remove_reserved_networks => 1,
    map_key_type_callback => sub { $_[0] eq 'country' ? 'map' : 'utf8_string' },
    description           => { en => $desc },
);

my $t0 = time;
my ($n4, $s4) = read_ranges($v4, sub { (int_to_v4($_[0]), int_to_v4($_[1])) }, $tree);
my ($n6, $s6) = read_ranges($v6, sub { @_ }, $tree);

my $epoch = $ENV{SOURCE_DATE_EPOCH} // $generated_epoch;
$tree->_set_build_epoch($epoch) if defined $epoch && $tree->can('_set_build_epoch');

open my $fh, '>:raw', "$out.tmp" or die "$out.tmp: $!\n";
$tree->write_tree($fh);
close $fh or die "$out.tmp: $!\n";
rename "$out.tmp", $out or die "$out: $!\n";

printf STDERR "%s: %d IPv4 + %d IPv6 ranges (%d skipped: unknown country or aliased), "
    . "%d bytes, %ds\n", $out, $n4, $n6, $s4 + $s6, -s $out, time - $t0;
