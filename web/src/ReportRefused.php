<?php
declare(strict_types=1);

namespace Ems\Web;

/** A saved-report request that cannot be done: the HTTP status is the code, the message says why. Nothing changed. */
final class ReportRefused extends \RuntimeException
{
}
