<?php

declare(strict_types=1);

namespace Fling;

/**
 * A request flingd refused, or one that could not be exchanged. $error is the daemon's error
 * code ("unknown_type", "unauthorized", "not_cancellable", ...) or, when no reply came, one of
 * connect_failed, send_failed, recv_failed, timeout, bad_reply. getCode() is the HTTP status
 * (0 when there was no reply).
 */
class FlingException extends \RuntimeException
{
    public function __construct(public readonly string $error, string $message, int $status = 0)
    {
        parent::__construct($message, $status);
    }

    /** The HTTP status of the reply, 0 if none arrived. */
    public function status(): int
    {
        return $this->getCode();
    }
}
