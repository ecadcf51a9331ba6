<?php
declare(strict_types=1);

namespace Ems\Web;

use PDO;

/**
 * Audited history in the web: a tab whose every look the bus audits (AUDITED_HISTORY in
 * broker/core/permissions.py: captures, chat, file operations) shows rows, and exports them, only to a
 * person who gave a reason for it. Giving one (a POST, CSRF-checked) writes a row of web_audit naming
 * the person, the tab, the filters and the reason, forwards the same to the bus audit trail through the
 * admin API when one is configured, and grants that person that tab for GRANT_S seconds
 * (web_history_grants). A GET only reads whether a live grant exists.
 */
final class HistoryGate
{
    public const AUDITED = ['fileops', 'messages', 'captures'];
    public const GRANT_S = 900;
    public const MAX_REASON = 500;
    /** the filters a grant records (HistoryQuery's parameter names) */
    public const FILTERS = ['q', 'server', 'client'];

    public function __construct(private readonly PDO $db)
    {
    }

    public static function audited(string $tab): bool
    {
        return in_array($tab, self::AUDITED, true);
    }

    /** The user's live grant for $tab (['reason' => ..., 'expires' => epoch s]) or null. */
    public function grant(?array $user, string $tab): ?array
    {
        if ($user === null) {
            return null;
        }
        $find = $this->db->prepare('SELECT reason, expires FROM web_history_grants
            WHERE user_id = :user AND tab = :tab AND expires > :now ORDER BY expires DESC LIMIT 1');
        $find->execute([':user' => (int) $user['id'], ':tab' => $tab, ':now' => microtime(true)]);
        return $find->fetch() ?: null;
    }

    /** The query's filters a grant records (the ones set). */
    public static function filters(HistoryQuery $query): array
    {
        return array_filter(array_intersect_key($query->params(), array_flip(self::FILTERS)),
            static fn (string $value): bool => $value !== '');
    }

    /** The reason as given, or null when it is empty or too long. */
    public static function reason(string $posted): ?string
    {
        $reason = trim($posted);
        $length = iconv_strlen($reason);
        return $reason === '' || $length === false || $length > self::MAX_REASON ? null : $reason;
    }

    /** What the bus audit trail said: the admin API's POST /api/history/<tab>/access in the user's name. */
    public static function forward(?AdminApi $api, array $user, string $tab, string $reason, array $filters): string
    {
        if ($api === null) {
            return 'no admin API configured';
        }
        $body = array_filter(['reason' => $reason, 'client_id' => $filters['client'] ?? '', 'text' => $filters['q'] ?? ''],
            static fn (string $value): bool => $value !== '');
        [$status, $answer] = $api->call('POST', '/api/history/' . rawurlencode($tab) . '/access', $body, $user);
        if ($status === 201) {
            return 'recorded as ' . AdminApi::operatorName($user);
        }
        return substr('not recorded: HTTP ' . $status . ' ' . (string) ($answer['error'] ?? ''), 0, 255);
    }

    /** Record the look (web_audit, with what the bus audit said) and grant the tab; returns the grant's end. */
    public function open(array $user, string $tab, string $reason, array $filters, string $busAudit): float
    {
        $now = microtime(true);
        $until = $now + self::GRANT_S;
        $this->db->beginTransaction();
        $this->db->prepare('INSERT INTO web_audit (ts, user_id, username, display_name, action, filters, reason, until_ts, bus_audit)
            VALUES (:ts, :user, :username, :display, :action, :filters, :reason, :until, :bus)')->execute([
            ':ts' => $now, ':user' => (int) $user['id'], ':username' => $user['username'], ':display' => $user['display_name'],
            ':action' => 'history.' . $tab, ':filters' => json_encode((object) $filters, JSON_THROW_ON_ERROR | JSON_UNESCAPED_UNICODE),
            ':reason' => $reason, ':until' => $until, ':bus' => $busAudit]);
        $this->db->prepare('INSERT INTO web_history_grants (user_id, tab, reason, granted, expires)
            VALUES (:user, :tab, :reason, :granted, :expires)')->execute([
            ':user' => (int) $user['id'], ':tab' => $tab, ':reason' => $reason, ':granted' => $now, ':expires' => $until]);
        $this->db->commit();
        return $until;
    }
}
