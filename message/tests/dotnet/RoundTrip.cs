// An independent .NET check of weft's text XML and binary XML (tests/dotnet.rs).
//
// The classes below mirror the data contracts of Microsoft.Xrm.Sdk that a
// RemoteExecutionContext carries: names, namespaces and member names as in a
// public decompilation of Microsoft.Xrm.Sdk 9.0.2.46. Only the serialized shape
// is mirrored (no behaviour). DataCollection<K,V> is mirrored as a
// List<KeyValuePair<K,V>> so item order is kept; the item element names
// (KeyValuePairOfstringEntitygUGIFE1S, …) are computed by the serializer
// itself, which is the point of the check.
//
// Usage: mono RoundTrip.exe DIR
// For every DIR/NAME.weft.xml and DIR/NAME.weft.bin written by weft, reads the
// context with DataContractSerializer (text reader, or binary reader without a
// dictionary, as Service Bus's GetBody<T>() does) and writes it back in both
// formats, as DIR/NAME.weft.xml.net.xml and DIR/NAME.weft.xml.net.bin (and
// likewise for .weft.bin): DataContractSerializer.WriteObject on a text writer
// (UTF-8, no declaration) and on XmlDictionaryWriter.CreateBinaryWriter (no
// dictionary). Exit code 1 and a line "FAIL FILE: message" for each input
// .NET could not read. Local dates are shown in the zone of the TZ variable.
//
// Deviation from the SDK, on purpose: the three members newer payloads carry
// (InitiatingUserAgent, InitiatingUserAzureActiveDirectoryObjectId,
// UserAzureActiveDirectoryObjectId) are written only when present, as weft's
// model keeps them absent for older payloads.

using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.Serialization;
using System.Text;
using System.Xml;

namespace Microsoft.Xrm.Sdk
{
    static class Ns
    {
        public const string C = "http://schemas.microsoft.com/xrm/2011/Contracts";
        public const string C71 = "http://schemas.microsoft.com/xrm/7.1/Contracts";
        public const string C90 = "http://schemas.microsoft.com/xrm/9.0/Contracts";
    }

    [CollectionDataContract(Name = "ParameterCollection", Namespace = Ns.C)]
    public class ParameterCollection : List<KeyValuePair<string, object>> { }

    [CollectionDataContract(Name = "AttributeCollection", Namespace = Ns.C)]
    public class AttributeCollection : List<KeyValuePair<string, object>> { }

    [CollectionDataContract(Name = "FormattedValueCollection", Namespace = Ns.C)]
    public class FormattedValueCollection : List<KeyValuePair<string, string>> { }

    [CollectionDataContract(Name = "KeyAttributeCollection", Namespace = Ns.C71)]
    public class KeyAttributeCollection : List<KeyValuePair<string, object>> { }

    [CollectionDataContract(Name = "EntityImageCollection", Namespace = Ns.C)]
    public class EntityImageCollection : List<KeyValuePair<string, Entity>> { }

    [CollectionDataContract(Name = "RelatedEntityCollection", Namespace = Ns.C)]
    public class RelatedEntityCollection : List<KeyValuePair<Relationship, EntityCollection>> { }

    [CollectionDataContract(Name = "EntityReferenceCollection", Namespace = Ns.C)]
    public class EntityReferenceCollection : List<EntityReference> { }

    [CollectionDataContract(Name = "OptionSetValueCollection", Namespace = Ns.C90)]
    public class OptionSetValueCollection : List<OptionSetValue> { }

    [DataContract(Name = "EntityState", Namespace = Ns.C)]
    public enum EntityState
    {
        [EnumMember] Unchanged = 0,
        [EnumMember] Created = 1,
        [EnumMember] Changed = 2,
    }

    [DataContract(Name = "EntityRole", Namespace = Ns.C)]
    public enum EntityRole
    {
        [EnumMember] Referencing = 0,
        [EnumMember] Referenced = 1,
    }

    [DataContract(Name = "Entity", Namespace = Ns.C)]
    public class Entity
    {
        [DataMember] public AttributeCollection Attributes;
        [DataMember] public EntityState? EntityState;
        [DataMember] public FormattedValueCollection FormattedValues;
        [DataMember] public Guid Id;
        [DataMember] public KeyAttributeCollection KeyAttributes;
        [DataMember] public string LogicalName;
        [DataMember] public RelatedEntityCollection RelatedEntities;
        [DataMember] public string RowVersion;
    }

    [DataContract(Name = "EntityReference", Namespace = Ns.C)]
    public class EntityReference
    {
        [DataMember] public Guid Id;
        [DataMember] public KeyAttributeCollection KeyAttributes;
        [DataMember] public string LogicalName;
        [DataMember] public string Name;
        [DataMember] public string RowVersion;
    }

    [DataContract(Name = "EntityCollection", Namespace = Ns.C)]
    public class EntityCollection
    {
        [DataMember] public List<Entity> Entities;
        [DataMember] public string EntityName;
        [DataMember] public string MinActiveRowVersion;
        [DataMember] public bool MoreRecords;
        [DataMember] public string PagingCookie;
        [DataMember] public int TotalRecordCount;
        [DataMember] public bool TotalRecordCountLimitExceeded;
    }

    [DataContract(Name = "Money", Namespace = Ns.C)]
    public class Money
    {
        [DataMember] public decimal Value;
    }

    [DataContract(Name = "OptionSetValue", Namespace = Ns.C)]
    public class OptionSetValue
    {
        [DataMember] public int Value;
    }

    [DataContract(Name = "AliasedValue", Namespace = Ns.C)]
    public class AliasedValue
    {
        [DataMember] public string AttributeLogicalName;
        [DataMember] public string EntityLogicalName;
        [DataMember] public object Value;
    }

    [DataContract(Name = "ColumnSet", Namespace = Ns.C)]
    public class ColumnSet
    {
        [DataMember] public bool AllColumns;
        [DataMember] public List<string> Columns;
    }

    [DataContract(Name = "Relationship", Namespace = Ns.C)]
    public class Relationship
    {
        [DataMember] public EntityRole? PrimaryEntityRole;
        [DataMember] public string SchemaName;
    }

    [DataContract(Name = "RemoteExecutionContext", Namespace = Ns.C)]
    public class RemoteExecutionContext
    {
        [DataMember] public Guid BusinessUnitId;
        [DataMember] public Guid CorrelationId;
        [DataMember] public int Depth;
        [DataMember(EmitDefaultValue = false)] public string InitiatingUserAgent;
        [DataMember(EmitDefaultValue = false)] public Guid? InitiatingUserAzureActiveDirectoryObjectId;
        [DataMember] public Guid InitiatingUserId;
        [DataMember] public ParameterCollection InputParameters;
        [DataMember] public bool IsExecutingOffline;
        [DataMember] public bool IsInTransaction;
        [DataMember] public bool IsOfflinePlayback;
        [DataMember] public int IsolationMode;
        [DataMember] public string MessageName;
        [DataMember] public int Mode;
        [DataMember] public DateTime OperationCreatedOn;
        [DataMember] public Guid OperationId;
        [DataMember] public Guid OrganizationId;
        [DataMember] public string OrganizationName;
        [DataMember] public ParameterCollection OutputParameters;
        [DataMember] public EntityReference OwningExtension;
        [DataMember] public RemoteExecutionContext ParentContext;
        [DataMember] public EntityImageCollection PostEntityImages;
        [DataMember] public EntityImageCollection PreEntityImages;
        [DataMember] public Guid PrimaryEntityId;
        [DataMember] public string PrimaryEntityName;
        [DataMember] public Guid? RequestId;
        [DataMember] public string SecondaryEntityName;
        [DataMember] public ParameterCollection SharedVariables;
        [DataMember] public int Stage;
        [DataMember(EmitDefaultValue = false)] public Guid? UserAzureActiveDirectoryObjectId;
        [DataMember] public Guid UserId;
    }
}

static class RoundTrip
{
    // The types that appear in object-typed slots (parameters, attributes).
    static readonly Type[] Known =
    {
        typeof(Microsoft.Xrm.Sdk.Entity), typeof(Microsoft.Xrm.Sdk.EntityReference),
        typeof(Microsoft.Xrm.Sdk.EntityCollection), typeof(Microsoft.Xrm.Sdk.EntityReferenceCollection),
        typeof(Microsoft.Xrm.Sdk.Money), typeof(Microsoft.Xrm.Sdk.OptionSetValue),
        typeof(Microsoft.Xrm.Sdk.OptionSetValueCollection), typeof(Microsoft.Xrm.Sdk.AliasedValue),
        typeof(Microsoft.Xrm.Sdk.ColumnSet), typeof(Microsoft.Xrm.Sdk.Relationship),
        typeof(KeyValuePair<string, string>[]),
    };

    static readonly DataContractSerializer Serializer =
        new DataContractSerializer(typeof(Microsoft.Xrm.Sdk.RemoteExecutionContext), Known);

    static object Read(byte[] bytes, bool binary)
    {
        var quotas = XmlDictionaryReaderQuotas.Max;
        using (var reader = binary
            ? XmlDictionaryReader.CreateBinaryReader(bytes, 0, bytes.Length, quotas)
            : XmlDictionaryReader.CreateTextReader(bytes, quotas))
        {
            return Serializer.ReadObject(reader);
        }
    }

    static byte[] Write(object ctx, bool binary)
    {
        var stream = new MemoryStream();
        using (var writer = binary
            ? XmlDictionaryWriter.CreateBinaryWriter(stream)
            : XmlDictionaryWriter.CreateTextWriter(stream, new UTF8Encoding(false), false))
        {
            Serializer.WriteObject(writer, ctx);
        }
        return stream.ToArray();
    }

    static int Main(string[] args)
    {
        int failures = 0;
        foreach (var path in Directory.GetFiles(args[0]))
        {
            bool binary = path.EndsWith(".weft.bin");
            if (!binary && !path.EndsWith(".weft.xml")) continue;
            try
            {
                var ctx = Read(File.ReadAllBytes(path), binary);
                File.WriteAllBytes(path + ".net.xml", Write(ctx, false));
                File.WriteAllBytes(path + ".net.bin", Write(ctx, true));
            }
            catch (Exception e)
            {
                Console.WriteLine("FAIL " + Path.GetFileName(path) + ": " + e.GetType().Name + ": " + e.Message);
                failures++;
            }
        }
        return failures == 0 ? 0 : 1;
    }
}
