<?php
declare(strict_types=1);

namespace Ems\Web;

/**
 * Opens values the sync worker sealed for the web (sync/web_crypto.py): 0x01 ‖ 12-byte nonce ‖
 * ciphertext ‖ 16-byte tag, AES-256-GCM under DATA/web/web.key, bound to table:column:server:row.
 */
final class Sealed
{
    /** what a value that does not open is shown as (never its bytes) */
    public const UNREADABLE = '[sealed value could not be opened]';
    private const VERSION = "\x01";

    private ?string $key = null;

    public function __construct(?string $keyPath)
    {
        $text = $keyPath ? @file_get_contents($keyPath) : false;
        $key = $text === false ? false : base64_decode(trim($text), true);
        if ($key !== false && strlen($key) === 32) {
            $this->key = $key;
        } elseif ($keyPath) {
            error_log('ems web: cannot read the web key ' . $keyPath);
        }
    }

    /** The id of the key this web UI holds (sync/web_crypto.py WebKey.key_id), '' without one. */
    public function keyId(): string
    {
        return $this->key === null ? '' : substr(hash('sha256', "ems web key id\0" . $this->key), 0, 16);
    }

    /** The clear text of $blob in $table.$column of row ($server, $rowId); null stays null. */
    public function open(?string $blob, string $table, string $column, string $server, string $rowId): ?string
    {
        if ($blob === null) {
            return null;
        }
        if ($this->key === null || strlen($blob) < 29 || $blob[0] !== self::VERSION) {
            return self::UNREADABLE;
        }
        $plain = openssl_decrypt(substr($blob, 13, -16), 'aes-256-gcm', $this->key, OPENSSL_RAW_DATA,
            substr($blob, 1, 12), substr($blob, -16), "$table:$column:$server:$rowId");
        return $plain === false ? self::UNREADABLE : $plain;
    }
}
