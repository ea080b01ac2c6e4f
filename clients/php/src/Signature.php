<?php

declare(strict_types=1);

namespace Fling;

/** Checks the Fling-Signature header of a callback flingd POSTed (with [callbacks] secret). */
final class Signature
{
    /**
     * true if $header is "sha256=<hex HMAC-SHA256 of $body keyed with $secret>". The raw body
     * is what was signed: pass file_get_contents('php://input'), not a re-encoded array.
     * Constant-time in the compared bytes (hash_equals).
     */
    public static function verify(string $body, ?string $header, string $secret): bool
    {
        if ($header === null || $secret === '') {
            return false;
        }
        $expected = 'sha256=' . hash_hmac('sha256', $body, $secret);
        return hash_equals($expected, strtolower(trim($header)));
    }
}
