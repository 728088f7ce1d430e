/**
 * The code of the sample apps, in smali (assembled by `smali` into classes.dex): every component
 * a sample manifest declares is implemented here, so the apps would run. Minimal, but each
 * answers its framework calls for real:
 * - MainActivity (every app) shows the app's label;
 * - the personal cloud's DataStoreProvider keeps rows in SQLite, each row owned by the package
 *   that wrote it (a customer-side app sees and changes only its own rows);
 * - its SyncAdapter (bound through SyncService) counts the rows it would sync;
 * - its Authenticator (AccountAuthenticatorService) adds the local personal-cloud account and
 *   turns on sync for it; it gives out no auth tokens;
 * - its CloudTransport (BackupTransportService) keeps each app's key/value backup in the
 *   app's files (asking for a non-incremental backup whenever an incremental one comes) and
 *   restores it; it refuses full-data backups.
 * Framework signatures follow the AOSP sources of each superclass.
 */
import type { SmaliSource } from '../apkgen/index.ts';

/** `org.omie.x` → `Lorg/omie/x/<Cls>;`. */
const cls = (pkg: string, name: string) => `L${pkg.replace(/\./g, '/')}/${name};`;

function source(pkg: string, name: string, superClass: string, body: string): SmaliSource {
  return {
    name: `${pkg}.${name}`,
    smali: `.class public ${cls(pkg, name)}
.super ${superClass}
.source "${name}.java"
${body}`,
  };
}

/** The launcher activity of every sample app: a TextView with the app's label. */
export function mainActivity(pkg: string): SmaliSource {
  const me = cls(pkg, 'MainActivity');
  return source(
    pkg,
    'MainActivity',
    'Landroid/app/Activity;',
    `
.method public constructor <init>()V
    .locals 0
    invoke-direct {p0}, Landroid/app/Activity;-><init>()V
    return-void
.end method

.method protected onCreate(Landroid/os/Bundle;)V
    .locals 3
    invoke-super {p0, p1}, Landroid/app/Activity;->onCreate(Landroid/os/Bundle;)V
    new-instance v0, Landroid/widget/TextView;
    invoke-direct {v0, p0}, Landroid/widget/TextView;-><init>(Landroid/content/Context;)V
    invoke-virtual {p0}, ${me}->getApplicationInfo()Landroid/content/pm/ApplicationInfo;
    move-result-object v1
    invoke-virtual {p0}, ${me}->getPackageManager()Landroid/content/pm/PackageManager;
    move-result-object v2
    invoke-virtual {v1, v2}, Landroid/content/pm/ApplicationInfo;->loadLabel(Landroid/content/pm/PackageManager;)Ljava/lang/CharSequence;
    move-result-object v1
    invoke-virtual {v0, v1}, Landroid/widget/TextView;->setText(Ljava/lang/CharSequence;)V
    invoke-virtual {p0, v0}, ${me}->setContentView(Landroid/view/View;)V
    return-void
.end method
`,
  );
}

/**
 * First-boot setup, as AOSP's Provision DefaultActivity does it: mark the device provisioned
 * (Settings.Global.DEVICE_PROVISIONED) and the user's setup complete
 * (Settings.Secure.USER_SETUP_COMPLETE), disable this HOME activity so the launcher takes over,
 * and finish. Needs WRITE_SECURE_SETTINGS (a privileged permission) and runs as a priv-app.
 */
export function setupActivity(pkg: string): SmaliSource {
  const me = cls(pkg, 'SetupActivity');
  return source(
    pkg,
    'SetupActivity',
    'Landroid/app/Activity;',
    `
.method public constructor <init>()V
    .locals 0
    invoke-direct {p0}, Landroid/app/Activity;-><init>()V
    return-void
.end method

.method protected onCreate(Landroid/os/Bundle;)V
    .locals 4
    invoke-super {p0, p1}, Landroid/app/Activity;->onCreate(Landroid/os/Bundle;)V
    invoke-virtual {p0}, ${me}->getContentResolver()Landroid/content/ContentResolver;
    move-result-object v0
    const-string v1, "device_provisioned"
    const/4 v2, 0x1
    invoke-static {v0, v1, v2}, Landroid/provider/Settings$Global;->putInt(Landroid/content/ContentResolver;Ljava/lang/String;I)Z
    const-string v1, "user_setup_complete"
    invoke-static {v0, v1, v2}, Landroid/provider/Settings$Secure;->putInt(Landroid/content/ContentResolver;Ljava/lang/String;I)Z
    invoke-virtual {p0}, ${me}->getPackageManager()Landroid/content/pm/PackageManager;
    move-result-object v0
    new-instance v1, Landroid/content/ComponentName;
    const-class v3, ${me}
    invoke-direct {v1, p0, v3}, Landroid/content/ComponentName;-><init>(Landroid/content/Context;Ljava/lang/Class;)V
    const/4 v3, 0x2
    invoke-virtual {v0, v1, v3, v2}, Landroid/content/pm/PackageManager;->setComponentEnabledSetting(Landroid/content/ComponentName;II)V
    invoke-virtual {p0}, ${me}->finish()V
    return-void
.end method
`,
  );
}

export interface PersonalCloudNames {
  package: string;
  /** Authority of the data-store provider. */
  authority: string;
  /** Account type of the authenticator and the sync adapter. */
  accountType: string;
  /** The transport's name: its host service's component, as def_backup_transport names it. */
  transportName: string;
}

/** A SQLite-backed provider; every row carries the package that wrote it (`owner`). */
function dataStoreProvider(n: PersonalCloudNames): SmaliSource {
  const me = cls(n.package, 'DataStoreProvider');
  const DB = 'Landroid/database/sqlite/SQLiteDatabase;';
  return source(
    n.package,
    'DataStoreProvider',
    'Landroid/content/ContentProvider;',
    `
.field private db:${DB}

.method public constructor <init>()V
    .locals 0
    invoke-direct {p0}, Landroid/content/ContentProvider;-><init>()V
    return-void
.end method

.method public onCreate()Z
    .locals 4
    invoke-virtual {p0}, ${me}->getContext()Landroid/content/Context;
    move-result-object v0
    const-string v1, "datastore.db"
    const/4 v2, 0x0
    const/4 v3, 0x0
    invoke-virtual {v0, v1, v2, v3}, Landroid/content/Context;->openOrCreateDatabase(Ljava/lang/String;ILandroid/database/sqlite/SQLiteDatabase$CursorFactory;)${DB}
    move-result-object v0
    const-string v1, "CREATE TABLE IF NOT EXISTS items (_id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL, name TEXT NOT NULL, value TEXT)"
    invoke-virtual {v0, v1}, ${DB}->execSQL(Ljava/lang/String;)V
    iput-object v0, p0, ${me}->db:${DB}
    const/4 v0, 0x1
    return v0
.end method

# The package on whose behalf the call runs (this app itself for its own sync adapter).
.method private owner()Ljava/lang/String;
    .locals 1
    invoke-virtual {p0}, ${me}->getCallingPackage()Ljava/lang/String;
    move-result-object v0
    if-nez v0, :known
    invoke-virtual {p0}, ${me}->getContext()Landroid/content/Context;
    move-result-object v0
    invoke-virtual {v0}, Landroid/content/Context;->getPackageName()Ljava/lang/String;
    move-result-object v0
    :known
    return-object v0
.end method

.method private static where(Ljava/lang/String;)Ljava/lang/String;
    .locals 2
    if-nez p0, :combine
    const-string v0, "owner = ?"
    return-object v0
    :combine
    new-instance v0, Ljava/lang/StringBuilder;
    const-string v1, "owner = ? AND ("
    invoke-direct {v0, v1}, Ljava/lang/StringBuilder;-><init>(Ljava/lang/String;)V
    invoke-virtual {v0, p0}, Ljava/lang/StringBuilder;->append(Ljava/lang/String;)Ljava/lang/StringBuilder;
    const-string v1, ")"
    invoke-virtual {v0, v1}, Ljava/lang/StringBuilder;->append(Ljava/lang/String;)Ljava/lang/StringBuilder;
    invoke-virtual {v0}, Ljava/lang/StringBuilder;->toString()Ljava/lang/String;
    move-result-object v0
    return-object v0
.end method

.method private static args(Ljava/lang/String;[Ljava/lang/String;)[Ljava/lang/String;
    .locals 4
    const/4 v0, 0x0
    if-eqz p1, :sized
    array-length v0, p1
    :sized
    add-int/lit8 v1, v0, 0x1
    new-array v1, v1, [Ljava/lang/String;
    const/4 v2, 0x0
    aput-object p0, v1, v2
    if-eqz p1, :done
    const/4 v3, 0x1
    invoke-static {p1, v2, v1, v3, v0}, Ljava/lang/System;->arraycopy(Ljava/lang/Object;ILjava/lang/Object;II)V
    :done
    return-object v1
.end method

# A copy of the values with the owner set to the caller (a caller cannot write as another).
.method private owned(Landroid/content/ContentValues;)Landroid/content/ContentValues;
    .locals 3
    if-nez p1, :copy
    new-instance v0, Landroid/content/ContentValues;
    invoke-direct {v0}, Landroid/content/ContentValues;-><init>()V
    goto :set
    :copy
    new-instance v0, Landroid/content/ContentValues;
    invoke-direct {v0, p1}, Landroid/content/ContentValues;-><init>(Landroid/content/ContentValues;)V
    :set
    const-string v1, "owner"
    invoke-direct {p0}, ${me}->owner()Ljava/lang/String;
    move-result-object v2
    invoke-virtual {v0, v1, v2}, Landroid/content/ContentValues;->put(Ljava/lang/String;Ljava/lang/String;)V
    return-object v0
.end method

.method public query(Landroid/net/Uri;[Ljava/lang/String;Ljava/lang/String;[Ljava/lang/String;Ljava/lang/String;)Landroid/database/Cursor;
    .locals 9
    invoke-direct {p0}, ${me}->owner()Ljava/lang/String;
    move-result-object v0
    iget-object v1, p0, ${me}->db:${DB}
    const-string v2, "items"
    move-object v3, p2
    invoke-static {p3}, ${me}->where(Ljava/lang/String;)Ljava/lang/String;
    move-result-object v4
    invoke-static {v0, p4}, ${me}->args(Ljava/lang/String;[Ljava/lang/String;)[Ljava/lang/String;
    move-result-object v5
    const/4 v6, 0x0
    const/4 v7, 0x0
    move-object v8, p5
    invoke-virtual/range {v1 .. v8}, ${DB}->query(Ljava/lang/String;[Ljava/lang/String;Ljava/lang/String;[Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;)Landroid/database/Cursor;
    move-result-object v0
    return-object v0
.end method

.method public getType(Landroid/net/Uri;)Ljava/lang/String;
    .locals 1
    const-string v0, "vnd.android.cursor.dir/vnd.${n.authority}.item"
    return-object v0
.end method

.method public insert(Landroid/net/Uri;Landroid/content/ContentValues;)Landroid/net/Uri;
    .locals 5
    invoke-direct {p0, p2}, ${me}->owned(Landroid/content/ContentValues;)Landroid/content/ContentValues;
    move-result-object v0
    iget-object v1, p0, ${me}->db:${DB}
    const-string v2, "items"
    const/4 v3, 0x0
    invoke-virtual {v1, v2, v3, v0}, ${DB}->insert(Ljava/lang/String;Ljava/lang/String;Landroid/content/ContentValues;)J
    move-result-wide v1
    const-wide/16 v3, 0x0
    cmp-long v0, v1, v3
    if-gez v0, :inserted
    const/4 v0, 0x0
    return-object v0
    :inserted
    invoke-static {p1, v1, v2}, Landroid/content/ContentUris;->withAppendedId(Landroid/net/Uri;J)Landroid/net/Uri;
    move-result-object v0
    return-object v0
.end method

.method public delete(Landroid/net/Uri;Ljava/lang/String;[Ljava/lang/String;)I
    .locals 4
    invoke-direct {p0}, ${me}->owner()Ljava/lang/String;
    move-result-object v0
    iget-object v1, p0, ${me}->db:${DB}
    const-string v2, "items"
    invoke-static {p2}, ${me}->where(Ljava/lang/String;)Ljava/lang/String;
    move-result-object v3
    invoke-static {v0, p3}, ${me}->args(Ljava/lang/String;[Ljava/lang/String;)[Ljava/lang/String;
    move-result-object v0
    invoke-virtual {v1, v2, v3, v0}, ${DB}->delete(Ljava/lang/String;Ljava/lang/String;[Ljava/lang/String;)I
    move-result v0
    return v0
.end method

.method public update(Landroid/net/Uri;Landroid/content/ContentValues;Ljava/lang/String;[Ljava/lang/String;)I
    .locals 5
    invoke-direct {p0}, ${me}->owner()Ljava/lang/String;
    move-result-object v0
    invoke-direct {p0, p2}, ${me}->owned(Landroid/content/ContentValues;)Landroid/content/ContentValues;
    move-result-object v1
    iget-object v2, p0, ${me}->db:${DB}
    const-string v3, "items"
    invoke-static {p3}, ${me}->where(Ljava/lang/String;)Ljava/lang/String;
    move-result-object v4
    invoke-static {v0, p4}, ${me}->args(Ljava/lang/String;[Ljava/lang/String;)[Ljava/lang/String;
    move-result-object v0
    invoke-virtual {v2, v3, v1, v4, v0}, ${DB}->update(Ljava/lang/String;Landroid/content/ContentValues;Ljava/lang/String;[Ljava/lang/String;)I
    move-result v0
    return v0
.end method
`,
  );
}

function syncAdapter(n: PersonalCloudNames): SmaliSource {
  const S = 'Landroid/content/AbstractThreadedSyncAdapter;';
  return source(
    n.package,
    'SyncAdapter',
    S,
    `
.method public constructor <init>(Landroid/content/Context;Z)V
    .locals 0
    invoke-direct {p0, p1, p2}, ${S}-><init>(Landroid/content/Context;Z)V
    return-void
.end method

# Counts the rows of the data store: what a sync to the owner's remote would carry.
.method public onPerformSync(Landroid/accounts/Account;Landroid/os/Bundle;Ljava/lang/String;Landroid/content/ContentProviderClient;Landroid/content/SyncResult;)V
    .locals 6
    :try_start
    const-string v0, "content://${n.authority}/items"
    invoke-static {v0}, Landroid/net/Uri;->parse(Ljava/lang/String;)Landroid/net/Uri;
    move-result-object v1
    move-object v0, p4
    const/4 v2, 0x0
    const/4 v3, 0x0
    const/4 v4, 0x0
    const/4 v5, 0x0
    invoke-virtual/range {v0 .. v5}, Landroid/content/ContentProviderClient;->query(Landroid/net/Uri;[Ljava/lang/String;Ljava/lang/String;[Ljava/lang/String;Ljava/lang/String;)Landroid/database/Cursor;
    move-result-object v0
    if-eqz v0, :done
    invoke-interface {v0}, Landroid/database/Cursor;->getCount()I
    move-result v1
    iget-object v2, p5, Landroid/content/SyncResult;->stats:Landroid/content/SyncStats;
    int-to-long v3, v1
    iput-wide v3, v2, Landroid/content/SyncStats;->numEntries:J
    invoke-interface {v0}, Landroid/database/Cursor;->close()V
    :try_end
    .catch Landroid/os/RemoteException; {:try_start .. :try_end} :unreachable
    :done
    return-void
    :unreachable
    iget-object v0, p5, Landroid/content/SyncResult;->stats:Landroid/content/SyncStats;
    iget-wide v1, v0, Landroid/content/SyncStats;->numIoExceptions:J
    const-wide/16 v3, 0x1
    add-long/2addr v1, v3
    iput-wide v1, v0, Landroid/content/SyncStats;->numIoExceptions:J
    return-void
.end method
`,
  );
}

/** A Service whose onBind returns the binder of a framework object made in onCreate. */
function bindingService(
  pkg: string,
  name: string,
  field: { type: string; make: string[] },
  binder: string,
): SmaliSource {
  const me = cls(pkg, name);
  return source(
    pkg,
    name,
    'Landroid/app/Service;',
    `
.field private impl:${field.type}

.method public constructor <init>()V
    .locals 0
    invoke-direct {p0}, Landroid/app/Service;-><init>()V
    return-void
.end method

.method public onCreate()V
    .locals 3
    invoke-super {p0}, Landroid/app/Service;->onCreate()V
${field.make.map((l) => `    ${l}`).join('\n')}
    iput-object v0, p0, ${me}->impl:${field.type}
    return-void
.end method

.method public onBind(Landroid/content/Intent;)Landroid/os/IBinder;
    .locals 1
    iget-object v0, p0, ${me}->impl:${field.type}
    invoke-virtual {v0}, ${binder}
    move-result-object v0
    return-object v0
.end method
`,
  );
}

function authenticator(n: PersonalCloudNames): SmaliSource {
  const me = cls(n.package, 'Authenticator');
  const A = 'Landroid/accounts/AbstractAccountAuthenticator;';
  const R = 'Landroid/accounts/AccountAuthenticatorResponse;';
  const unsupported = (sig: string, locals: number) => `
.method public ${sig}Landroid/os/Bundle;
    .locals ${locals}
    invoke-static {}, ${me}->unsupported()Landroid/os/Bundle;
    move-result-object v0
    return-object v0
.end method
`;
  return source(
    n.package,
    'Authenticator',
    A,
    `
.field private final context:Landroid/content/Context;

.method public constructor <init>(Landroid/content/Context;)V
    .locals 0
    invoke-direct {p0, p1}, ${A}-><init>(Landroid/content/Context;)V
    iput-object p1, p0, ${me}->context:Landroid/content/Context;
    return-void
.end method

# AccountManager.ERROR_CODE_UNSUPPORTED_OPERATION (6): the personal cloud hands out no tokens
# and keeps no password to confirm or update.
.method private static unsupported()Landroid/os/Bundle;
    .locals 3
    new-instance v0, Landroid/os/Bundle;
    invoke-direct {v0}, Landroid/os/Bundle;-><init>()V
    const-string v1, "errorCode"
    const/4 v2, 0x6
    invoke-virtual {v0, v1, v2}, Landroid/os/Bundle;->putInt(Ljava/lang/String;I)V
    const-string v1, "errorMessage"
    const-string v2, "not offered by the personal cloud"
    invoke-virtual {v0, v1, v2}, Landroid/os/Bundle;->putString(Ljava/lang/String;Ljava/lang/String;)V
    return-object v0
.end method

# Adds the owner's personal-cloud account on this tablet and turns on its sync.
.method public addAccount(${R}Ljava/lang/String;Ljava/lang/String;[Ljava/lang/String;Landroid/os/Bundle;)Landroid/os/Bundle;
    .locals 4
    new-instance v0, Landroid/accounts/Account;
    const-string v1, "Personal cloud"
    invoke-direct {v0, v1, p2}, Landroid/accounts/Account;-><init>(Ljava/lang/String;Ljava/lang/String;)V
    iget-object v1, p0, ${me}->context:Landroid/content/Context;
    invoke-static {v1}, Landroid/accounts/AccountManager;->get(Landroid/content/Context;)Landroid/accounts/AccountManager;
    move-result-object v1
    const/4 v2, 0x0
    invoke-virtual {v1, v0, v2, v2}, Landroid/accounts/AccountManager;->addAccountExplicitly(Landroid/accounts/Account;Ljava/lang/String;Landroid/os/Bundle;)Z
    const-string v1, "${n.authority}"
    const/4 v2, 0x1
    invoke-static {v0, v1, v2}, Landroid/content/ContentResolver;->setSyncAutomatically(Landroid/accounts/Account;Ljava/lang/String;Z)V
    new-instance v1, Landroid/os/Bundle;
    invoke-direct {v1}, Landroid/os/Bundle;-><init>()V
    const-string v2, "authAccount"
    iget-object v3, v0, Landroid/accounts/Account;->name:Ljava/lang/String;
    invoke-virtual {v1, v2, v3}, Landroid/os/Bundle;->putString(Ljava/lang/String;Ljava/lang/String;)V
    const-string v2, "accountType"
    invoke-virtual {v1, v2, p2}, Landroid/os/Bundle;->putString(Ljava/lang/String;Ljava/lang/String;)V
    return-object v1
.end method
${unsupported(`editProperties(${R}Ljava/lang/String;)`, 1)}${unsupported(
  `confirmCredentials(${R}Landroid/accounts/Account;Landroid/os/Bundle;)`,
  1,
)}${unsupported(`getAuthToken(${R}Landroid/accounts/Account;Ljava/lang/String;Landroid/os/Bundle;)`, 1)}${unsupported(
  `updateCredentials(${R}Landroid/accounts/Account;Ljava/lang/String;Landroid/os/Bundle;)`,
  1,
)}
.method public getAuthTokenLabel(Ljava/lang/String;)Ljava/lang/String;
    .locals 1
    const-string v0, "Personal cloud"
    return-object v0
.end method

# No optional feature is offered: true only when none is asked for.
.method public hasFeatures(${R}Landroid/accounts/Account;[Ljava/lang/String;)Landroid/os/Bundle;
    .locals 3
    new-instance v0, Landroid/os/Bundle;
    invoke-direct {v0}, Landroid/os/Bundle;-><init>()V
    const/4 v1, 0x1
    if-eqz p3, :answer
    array-length v2, p3
    if-eqz v2, :answer
    const/4 v1, 0x0
    :answer
    const-string v2, "booleanResult"
    invoke-virtual {v0, v2, v1}, Landroid/os/Bundle;->putBoolean(Ljava/lang/String;Z)V
    return-object v0
.end method
`,
  );
}

function cloudTransport(n: PersonalCloudNames): SmaliSource {
  const me = cls(n.package, 'CloudTransport');
  const T = 'Landroid/app/backup/BackupTransport;';
  const PFD = 'Landroid/os/ParcelFileDescriptor;';
  const PI = 'Landroid/content/pm/PackageInfo;';
  const RD = 'Landroid/app/backup/RestoreDescription;';
  // BackupTransport result codes (android.app.backup.BackupTransport).
  const OK = '0x0';
  const ERROR = '-0x3e8'; // TRANSPORT_ERROR -1000
  const REJECTED = '-0x3ea'; // TRANSPORT_PACKAGE_REJECTED -1002
  const NON_INCREMENTAL_REQUIRED = '-0x3ee'; // TRANSPORT_NON_INCREMENTAL_BACKUP_REQUIRED -1006
  /** Closes a socket the transport owns, then returns `code`. */
  const closeAndReturn = (sig: string, reg: string, code: string) => `
.method public ${sig}I
    .locals 1
    :try_start
    invoke-virtual {${reg}}, ${PFD}->close()V
    :try_end
    .catch Ljava/io/IOException; {:try_start .. :try_end} :closed
    :closed
    const/16 v0, ${code}
    return v0
.end method
`;
  const constant = (sig: string, value: string) => `
.method public ${sig}Ljava/lang/String;
    .locals 1
    const-string v0, "${value}"
    return-object v0
.end method
`;
  return source(
    n.package,
    'CloudTransport',
    T,
    `
.field private final context:Landroid/content/Context;
.field private restorePackages:[${PI}
.field private restoreIndex:I
.field private restoreCurrent:Ljava/lang/String;

.method public constructor <init>(Landroid/content/Context;)V
    .locals 0
    invoke-direct {p0}, ${T}-><init>()V
    iput-object p1, p0, ${me}->context:Landroid/content/Context;
    return-void
.end method

# Where each app's latest key/value backup is kept: files/backup/<package>.
.method private backupDir()Ljava/io/File;
    .locals 3
    new-instance v0, Ljava/io/File;
    iget-object v1, p0, ${me}->context:Landroid/content/Context;
    invoke-virtual {v1}, Landroid/content/Context;->getFilesDir()Ljava/io/File;
    move-result-object v1
    const-string v2, "backup"
    invoke-direct {v0, v1, v2}, Ljava/io/File;-><init>(Ljava/io/File;Ljava/lang/String;)V
    return-object v0
.end method

.method private backupFile(Ljava/lang/String;)Ljava/io/File;
    .locals 2
    invoke-direct {p0}, ${me}->backupDir()Ljava/io/File;
    move-result-object v0
    new-instance v1, Ljava/io/File;
    invoke-direct {v1, v0, p1}, Ljava/io/File;-><init>(Ljava/io/File;Ljava/lang/String;)V
    return-object v1
.end method

.method private static copy(Ljava/io/InputStream;Ljava/io/OutputStream;)V
    .locals 3
    const/16 v0, 0x2000
    new-array v0, v0, [B
    :loop
    invoke-virtual {p0, v0}, Ljava/io/InputStream;->read([B)I
    move-result v1
    if-ltz v1, :done
    const/4 v2, 0x0
    invoke-virtual {p1, v0, v2, v1}, Ljava/io/OutputStream;->write([BII)V
    goto :loop
    :done
    return-void
.end method
${constant('name()', n.transportName)}${constant('transportDirName()', 'omie-personal-cloud')}${constant(
  'currentDestinationString()',
  "The owner's personal cloud",
)}${constant('dataManagementLabel()', 'Personal cloud')}
.method public initializeDevice()I
    .locals 4
    invoke-direct {p0}, ${me}->backupDir()Ljava/io/File;
    move-result-object v0
    invoke-virtual {v0}, Ljava/io/File;->listFiles()[Ljava/io/File;
    move-result-object v0
    if-eqz v0, :done
    const/4 v1, 0x0
    :loop
    array-length v2, v0
    if-ge v1, v2, :done
    aget-object v3, v0, v1
    invoke-virtual {v3}, Ljava/io/File;->delete()Z
    add-int/lit8 v1, v1, 0x1
    goto :loop
    :done
    const/4 v0, ${OK}
    return v0
.end method

.method public clearBackupData(${PI})I
    .locals 1
    iget-object v0, p1, ${PI}->packageName:Ljava/lang/String;
    invoke-direct {p0, v0}, ${me}->backupFile(Ljava/lang/String;)Ljava/io/File;
    move-result-object v0
    invoke-virtual {v0}, Ljava/io/File;->delete()Z
    const/4 v0, ${OK}
    return v0
.end method

.method public finishBackup()I
    .locals 1
    const/4 v0, ${OK}
    return v0
.end method

# Keeps the whole key/value data set of a non-incremental backup; an incremental one (a diff)
# is sent back as non-incremental. The framework owns inFd: it is read, never closed.
.method public performBackup(${PI}${PFD}I)I
    .locals 4
    and-int/lit8 v0, p3, 0x2
    if-eqz v0, :whole
    const/16 v0, ${NON_INCREMENTAL_REQUIRED}
    return v0
    :whole
    :try_start
    invoke-direct {p0}, ${me}->backupDir()Ljava/io/File;
    move-result-object v0
    invoke-virtual {v0}, Ljava/io/File;->mkdirs()Z
    iget-object v0, p1, ${PI}->packageName:Ljava/lang/String;
    invoke-direct {p0, v0}, ${me}->backupFile(Ljava/lang/String;)Ljava/io/File;
    move-result-object v0
    new-instance v1, Ljava/io/FileOutputStream;
    invoke-direct {v1, v0}, Ljava/io/FileOutputStream;-><init>(Ljava/io/File;)V
    invoke-virtual {p2}, ${PFD}->getFileDescriptor()Ljava/io/FileDescriptor;
    move-result-object v2
    new-instance v3, Ljava/io/FileInputStream;
    invoke-direct {v3, v2}, Ljava/io/FileInputStream;-><init>(Ljava/io/FileDescriptor;)V
    invoke-static {v3, v1}, ${me}->copy(Ljava/io/InputStream;Ljava/io/OutputStream;)V
    invoke-virtual {v1}, Ljava/io/FileOutputStream;->close()V
    :try_end
    .catch Ljava/io/IOException; {:try_start .. :try_end} :failed
    const/4 v0, ${OK}
    return v0
    :failed
    const/16 v0, ${ERROR}
    return v0
.end method

# One restore set, this tablet, when any backup is kept; none otherwise.
.method public getAvailableRestoreSets()[Landroid/app/backup/RestoreSet;
    .locals 6
    invoke-direct {p0}, ${me}->backupDir()Ljava/io/File;
    move-result-object v0
    invoke-virtual {v0}, Ljava/io/File;->list()[Ljava/lang/String;
    move-result-object v0
    const/4 v1, 0x0
    if-eqz v0, :sized
    array-length v2, v0
    if-eqz v2, :sized
    const/4 v1, 0x1
    :sized
    new-array v0, v1, [Landroid/app/backup/RestoreSet;
    if-eqz v1, :done
    new-instance v1, Landroid/app/backup/RestoreSet;
    const-string v2, "Personal cloud"
    const-string v3, "This tablet"
    const-wide/16 v4, 0x1
    invoke-direct {v1, v2, v3, v4, v5}, Landroid/app/backup/RestoreSet;-><init>(Ljava/lang/String;Ljava/lang/String;J)V
    const/4 v2, 0x0
    aput-object v1, v0, v2
    :done
    return-object v0
.end method

.method public getCurrentRestoreSet()J
    .locals 2
    const-wide/16 v0, 0x1
    return-wide v0
.end method

.method public startRestore(J[${PI})I
    .locals 1
    iput-object p3, p0, ${me}->restorePackages:[${PI}
    const/4 v0, 0x0
    iput v0, p0, ${me}->restoreIndex:I
    return v0
.end method

# The next requested package that has a backup, as key/value data.
.method public nextRestorePackage()${RD}
    .locals 4
    iget-object v0, p0, ${me}->restorePackages:[${PI}
    if-eqz v0, :done
    :loop
    iget v1, p0, ${me}->restoreIndex:I
    array-length v2, v0
    if-ge v1, v2, :done
    aget-object v2, v0, v1
    add-int/lit8 v1, v1, 0x1
    iput v1, p0, ${me}->restoreIndex:I
    iget-object v2, v2, ${PI}->packageName:Ljava/lang/String;
    invoke-direct {p0, v2}, ${me}->backupFile(Ljava/lang/String;)Ljava/io/File;
    move-result-object v3
    invoke-virtual {v3}, Ljava/io/File;->exists()Z
    move-result v3
    if-eqz v3, :loop
    iput-object v2, p0, ${me}->restoreCurrent:Ljava/lang/String;
    new-instance v0, ${RD}
    const/4 v1, 0x1
    invoke-direct {v0, v2, v1}, ${RD}-><init>(Ljava/lang/String;I)V
    return-object v0
    :done
    sget-object v0, ${RD}->NO_MORE_PACKAGES:${RD}
    return-object v0
.end method

# Writes the kept backup of the current package to outFd (owned by the framework: not closed).
.method public getRestoreData(${PFD})I
    .locals 3
    iget-object v0, p0, ${me}->restoreCurrent:Ljava/lang/String;
    if-eqz v0, :failed
    :try_start
    invoke-direct {p0, v0}, ${me}->backupFile(Ljava/lang/String;)Ljava/io/File;
    move-result-object v0
    new-instance v1, Ljava/io/FileInputStream;
    invoke-direct {v1, v0}, Ljava/io/FileInputStream;-><init>(Ljava/io/File;)V
    invoke-virtual {p1}, ${PFD}->getFileDescriptor()Ljava/io/FileDescriptor;
    move-result-object v0
    new-instance v2, Ljava/io/FileOutputStream;
    invoke-direct {v2, v0}, Ljava/io/FileOutputStream;-><init>(Ljava/io/FileDescriptor;)V
    invoke-static {v1, v2}, ${me}->copy(Ljava/io/InputStream;Ljava/io/OutputStream;)V
    invoke-virtual {v1}, Ljava/io/FileInputStream;->close()V
    :try_end
    .catch Ljava/io/IOException; {:try_start .. :try_end} :failed
    const/4 v0, ${OK}
    return v0
    :failed
    const/16 v0, ${ERROR}
    return v0
.end method

.method public finishRestore()V
    .locals 1
    const/4 v0, 0x0
    iput-object v0, p0, ${me}->restorePackages:[${PI}
    iput-object v0, p0, ${me}->restoreCurrent:Ljava/lang/String;
    return-void
.end method

# Full-data backups are not kept (key/value only): nothing can be in progress to cancel.
.method public cancelFullBackup()V
    .locals 0
    return-void
.end method
${closeAndReturn(`performFullBackup(${PI}${PFD}I)`, 'p2', REJECTED)}${closeAndReturn(
  `getNextFullRestoreDataChunk(${PFD})`,
  'p1',
  '-0x1',
)}`,
  );
}

export function personalCloudXml(n: PersonalCloudNames): Record<string, string> {
  const A = 'xmlns:android="http://schemas.android.com/apk/res/android"';
  return {
    authenticator: `<?xml version="1.0" encoding="utf-8"?>
<account-authenticator ${A}
    android:accountType="${n.accountType}"
    android:label="@string/app_name" />
`,
    syncadapter: `<?xml version="1.0" encoding="utf-8"?>
<sync-adapter ${A}
    android:contentAuthority="${n.authority}"
    android:accountType="${n.accountType}"
    android:userVisible="true"
    android:supportsUploading="true"
    android:allowParallelSyncs="false"
    android:isAlwaysSyncable="true" />
`,
  };
}

/** Every class of the personal cloud, its components and the framework objects they bind. */
export function personalCloudCode(n: PersonalCloudNames): SmaliSource[] {
  const p = n.package;
  return [
    mainActivity(p),
    dataStoreProvider(n),
    syncAdapter(n),
    authenticator(n),
    cloudTransport(n),
    bindingService(
      p,
      'SyncService',
      {
        type: cls(p, 'SyncAdapter'),
        make: [
          `new-instance v0, ${cls(p, 'SyncAdapter')}`,
          `invoke-virtual {p0}, ${cls(p, 'SyncService')}->getApplicationContext()Landroid/content/Context;`,
          'move-result-object v1',
          'const/4 v2, 0x1',
          `invoke-direct {v0, v1, v2}, ${cls(p, 'SyncAdapter')}-><init>(Landroid/content/Context;Z)V`,
        ],
      },
      'Landroid/content/AbstractThreadedSyncAdapter;->getSyncAdapterBinder()Landroid/os/IBinder;',
    ),
    bindingService(
      p,
      'AccountAuthenticatorService',
      {
        type: cls(p, 'Authenticator'),
        make: [
          `new-instance v0, ${cls(p, 'Authenticator')}`,
          `invoke-direct {v0, p0}, ${cls(p, 'Authenticator')}-><init>(Landroid/content/Context;)V`,
        ],
      },
      'Landroid/accounts/AbstractAccountAuthenticator;->getIBinder()Landroid/os/IBinder;',
    ),
    bindingService(
      p,
      'BackupTransportService',
      {
        type: cls(p, 'CloudTransport'),
        make: [
          `new-instance v0, ${cls(p, 'CloudTransport')}`,
          `invoke-direct {v0, p0}, ${cls(p, 'CloudTransport')}-><init>(Landroid/content/Context;)V`,
        ],
      },
      'Landroid/app/backup/BackupTransport;->getBinder()Landroid/os/IBinder;',
    ),
  ];
}
